"""The ``lmms-textdom`` command."""

from __future__ import annotations

import argparse


class VersionAction(argparse.Action):
    """``--version``, looked up only when asked (it runs git)."""

    def __init__(self, option_strings, dest, help=None):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        from lmms_textdom.provenance import version_text

        print(version_text())
        parser.exit()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="lmms-textdom", description="Measure text dominance in multimodal LLMs.")
    parser.add_argument("--version", action=VersionAction, help="this plugin's version and commit, and lmms-eval's, transformers' and torch's")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="llava_hf_textdom on mmmu_pro_textdom through lmms-eval, on a tiny built-in model (offline)")
    from lmms_textdom.report.command import add_arguments as add_report_arguments
    from lmms_textdom.sweeps.knockout import add_arguments as add_knockout_arguments
    from lmms_textdom.sweeps.table2 import add_arguments as add_table2_arguments

    add_table2_arguments(sub.add_parser("table2", help="MDI/AEI and accuracy against pruning ratio or replication factor (paper Table 2)"))
    add_knockout_arguments(sub.add_parser("knockout", help="accuracy and changed answers with a sliding window of layers cut off from the non-text input"))
    add_report_arguments(sub.add_parser("report", help="leaderboard (Markdown, CSV, HTML) and figures from lmms-eval outputs"))
    from lmms_textdom.measure.command import add_arguments as add_measure_arguments

    add_measure_arguments(sub.add_parser("measure", help="MDI/AEI of logged answers (any engine), by one teacher-forced pass"))
    from lmms_textdom.media.graphs import add_convert_arguments

    add_convert_arguments(sub.add_parser("graph-data", help="GraphGPT node features: convert graph_data_all.pt once (needs torch_geometric)"))
    args = parser.parse_args(argv)
    if args.command == "demo":
        from lmms_textdom.demo import run_demo

        run_demo()
    elif args.command == "table2":
        from lmms_textdom.sweeps.table2 import run_from_args

        run_from_args(args)
    elif args.command == "knockout":
        from lmms_textdom.core.errors import UsageError
        from lmms_textdom.sweeps.knockout import run_from_args as run_knockout

        try:
            run_knockout(args)
        except UsageError as exc:
            parser.exit(2, f"lmms-textdom knockout: error: {exc}\n")
    elif args.command == "report":
        from lmms_textdom.core.errors import UsageError
        from lmms_textdom.report.command import run_report

        try:
            run_report(args)
        except UsageError as exc:
            parser.exit(2, f"lmms-textdom report: error: {exc}\n")
    elif args.command == "measure":
        from lmms_textdom.core.errors import UsageError
        from lmms_textdom.measure.command import run_from_args as run_measure

        try:
            run_measure(args)
        except UsageError as exc:
            parser.exit(2, f"lmms-textdom measure: error: {exc}\n")
    elif args.command == "graph-data":
        from lmms_textdom.core.errors import UsageError
        from lmms_textdom.media.graphs import run_convert

        try:
            run_convert(args)
        except UsageError as exc:
            parser.exit(2, f"lmms-textdom graph-data: error: {exc}\n")


if __name__ == "__main__":
    main()
