"""The paper's Table 2 in one command: MDI / AEI per layer group and accuracy against pruning ratio
(or against the non-text replication factor), one real lmms-eval run per row."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Sequence

from lmms_textdom.integration.hook import DETAIL
from lmms_textdom.core.metrics import GROUPS
from lmms_textdom.report.paired_sweep import write_manifest
from lmms_textdom.report.runs import headline_metric
from lmms_textdom.integration.registry import model_class
from lmms_textdom.integration.runner import DEFAULT_CACHE
from lmms_textdom.progress import track
from lmms_textdom.sweeps.grid import Point, make_grid

PAPER_RATIOS = (0.0, 0.75, 0.90, 0.95)

def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def render(rows: list[tuple[str, dict]]) -> str:
    """Markdown: one row per setting, MDI / AEI per group (paper layout), then accuracy."""
    accuracy_name = next((name for _, cells in rows if (name := headline_metric(cells)[0])), "accuracy")
    header = "| setting | " + " | ".join(f"{g} MDI / AEI" for g in GROUPS) + f" | {accuracy_name} | samples |"
    lines = [header, "|---" * (len(GROUPS) + 3) + "|"]
    for setting, cells in rows:
        pairs = [f"{_fmt(cells.get(f'mdi_{g},none'))} / {_fmt(cells.get(f'aei_{g},none'))}" for g in GROUPS]
        accuracy = headline_metric(cells)[1]
        measured = cells.get(f"{DETAIL},none")
        lines.append(f"| {setting} | " + " | ".join(pairs) + f" | {_fmt(accuracy)} | {measured} |")
    return "\n".join(lines)


def setting_name(ratio: float, repeat: int) -> str:
    parts = [f"prune {ratio:.0%}" if ratio else "no pruning"]
    if repeat > 1 or ratio == 0:
        parts.append(f"x{repeat}")
    return ", ".join(parts)


def run_table2(
    pretrained: str | None = None,
    tasks: str | None = None,
    ratios: Sequence[float] | None = None,
    repeats: Sequence[int] = (1,),
    output: Path | None = None,
    batch_size: int = 2,
    device: str = "cpu",
    model: str = "llava_hf_textdom",
    limit: int | None = None,
    model_args: str = "",
    gen_kwargs: str | None = None,
) -> str:
    """Run one evaluation per (ratio, repeat) and return the table; the embedded default without ``pretrained``.

    A preset of ``lmms-textdom sweep``: the grid runs (and resumes) the same way, and the unedited run,
    where there is one, is the baseline of the paired sweep table ``lmms-textdom report`` draws.
    """
    output = Path(output) if output else DEFAULT_CACHE / "runs" / "table2"
    if ratios is None:
        ratios = PAPER_RATIOS if tuple(repeats) == (1,) else (0.0,)
    grid = make_grid(model, pretrained, model_args, tasks, output, gen_kwargs, limit, batch_size, device, model_class(model).DEFAULT_TASK)
    points = [
        Point(setting_name(ratio, repeat), f"r{ratio:g}_x{repeat}", f"prune_ratio={ratio},nontext_repeat={repeat}")
        for ratio, repeat in itertools.product(ratios, repeats)
    ]  # fmt: skip
    rows = [(point.name, grid.run(point)["results"][grid.task]) for point in track(points, "table2: lmms-eval runs", unit="run")]
    unedited = next((p for p in points if p.folder == "r0_x1"), None)
    if unedited is not None and len(points) > 1:
        others = [(p.name, p.folder) for p in points if p is not unedited]
        write_manifest(output, model, grid.pretrained, grid.tasks, unedited.folder, others)
    table = render(rows)
    print(f"\nTable 2 layout ({model}, {grid.task}; MDI / AEI per layer group, mean over samples):\n")
    print(table)
    return table


def add_arguments(parser) -> None:
    parser.add_argument("--pretrained", help="checkpoint (hub id or folder); default: the tiny built-in model, offline")
    parser.add_argument("--model", default="llava_hf_textdom", help="lmms-eval model id; without --pretrained, its tiny embedded default")
    parser.add_argument("--tasks", help="default: the model's own task (DEFAULT_TASK of its adapter, e.g. mmmu_pro_textdom)")
    parser.add_argument("--ratios", type=float, nargs="+", help="pruning ratios (default 0 0.75 0.9 0.95; 0 with --repeats)")
    parser.add_argument("--repeats", type=int, nargs="+", default=[1], help="non-text replication factors, e.g. 1 5 10")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--limit", type=int, help="documents per task (quick looks only)")
    parser.add_argument("--model-args", default="", help="further model_args, e.g. graph_tower=/path/clip_gt_arxiv_pub")
    parser.add_argument("--gen-kwargs", help="lmms-eval --gen_kwargs for every run, e.g. max_new_tokens=32 (embedded default: short answers)")
    parser.add_argument("--output", type=Path, help="folder for the runs (default .textdom-cache/runs/table2)")


def run_from_args(args) -> str:
    return run_table2(
        pretrained=args.pretrained, tasks=args.tasks, ratios=args.ratios, repeats=args.repeats, output=args.output,
        batch_size=args.batch_size, device=args.device, model=args.model, limit=args.limit, model_args=args.model_args,
        gen_kwargs=args.gen_kwargs,
    )  # fmt: skip
