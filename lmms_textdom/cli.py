"""The ``lmms-textdom`` command."""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="lmms-textdom", description="Measure text dominance in multimodal LLMs.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="measure MDI/AEI of a tiny random-weight LLaVA on drawn images (offline)")
    args = parser.parse_args(argv)
    if args.command == "demo":
        from lmms_textdom.demo import run_demo

        run_demo()


if __name__ == "__main__":
    main()
