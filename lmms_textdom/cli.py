"""The ``lmms-textdom`` command."""

from __future__ import annotations

import argparse


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="lmms-textdom", description="Measure text dominance in multimodal LLMs.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="measure MDI/AEI of a tiny random-weight LLaVA on drawn images (offline)")
    from lmms_textdom.report.command import add_arguments as add_report_arguments

    add_report_arguments(sub.add_parser("report", help="leaderboard (Markdown, CSV, HTML) and figures from lmms-eval outputs"))
    args = parser.parse_args(argv)
    if args.command == "demo":
        from lmms_textdom.demo import run_demo

        run_demo()
    elif args.command == "report":
        from lmms_textdom.errors import UsageError
        from lmms_textdom.report.command import run_report

        try:
            run_report(args)
        except UsageError as exc:
            parser.exit(2, f"lmms-textdom report: error: {exc}\n")


if __name__ == "__main__":
    main()
