"""The ``lmms-textdom`` command."""

from __future__ import annotations

import argparse
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="lmms-textdom", description="Measure text dominance in multimodal LLMs.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="llava_hf_textdom on mmmu_pro_textdom through lmms-eval, on a tiny built-in model (offline)")
    table2 = sub.add_parser("table2", help="MDI/AEI and accuracy against pruning ratio or replication factor (paper Table 2)")
    table2.add_argument("--pretrained", help="checkpoint (hub id or folder); default: the tiny built-in model, offline")
    table2.add_argument("--model", default="llava_hf_textdom")
    table2.add_argument("--tasks", default="mmmu_pro_textdom")
    table2.add_argument("--ratios", type=float, nargs="+", help="pruning ratios (default 0 0.75 0.9 0.95; 0 with --repeats)")
    table2.add_argument("--repeats", type=int, nargs="+", default=[1], help="non-text replication factors, e.g. 1 5 10")
    table2.add_argument("--batch-size", type=int, default=2)
    table2.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    table2.add_argument("--limit", type=int, help="documents per task (quick looks only)")
    table2.add_argument("--output", type=Path, help="folder for the runs (default .textdom-cache/runs/table2)")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from lmms_textdom.demo import run_demo

        run_demo()
    elif args.command == "table2":
        from lmms_textdom.table2 import run_table2

        run_table2(
            pretrained=args.pretrained, tasks=args.tasks, ratios=args.ratios, repeats=args.repeats, output=args.output,
            batch_size=args.batch_size, device=args.device, model=args.model, limit=args.limit,
        )  # fmt: skip


if __name__ == "__main__":
    main()
