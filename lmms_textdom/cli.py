"""The ``lmms-textdom`` command."""

from __future__ import annotations

import argparse
import sys

#: subcommand -> (module, its function adding the arguments, its function running them, help)
COMMANDS = {
    "demo": ("lmms_textdom.demo", "add_arguments", "run_from_args",
             "one family's tiny embedded default through lmms-eval, offline (default llava_hf_textdom)"),
    "table2": ("lmms_textdom.sweeps.table2", "add_arguments", "run_from_args",
               "MDI/AEI and accuracy against pruning ratio or replication factor (paper Table 2)"),
    "knockout": ("lmms_textdom.sweeps.knockout", "add_arguments", "run_from_args",
                 "accuracy and changed answers with a sliding window of layers cut off from the non-text input"),
    "sweep": ("lmms_textdom.sweeps.sweep", "add_arguments", "run_from_args",
              "one lmms-eval run per point of a model_args grid (--vary KEY=v1,v2), paired against the plain greedy baseline"),
    "report": ("lmms_textdom.report.command", "add_arguments", "run_report",
               "leaderboard (Markdown, CSV, HTML) and figures from lmms-eval outputs"),
    "measure": ("lmms_textdom.measure.command", "add_arguments", "run_from_args",
                "MDI/AEI of logged answers (any engine), by one teacher-forced pass"),
    "graph-data": ("lmms_textdom.media.graphs", "add_convert_arguments", "run_convert",
                   "GraphGPT node features: convert graph_data_all.pt once (needs torch_geometric)"),
}  # fmt: skip


class VersionAction(argparse.Action):
    """``--version``, looked up only when asked (it runs git)."""

    def __init__(self, option_strings, dest, help=None):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        from lmms_textdom.provenance import version_text

        print(version_text())
        parser.exit()


def main(argv: list[str] | None = None) -> None:
    import importlib

    from lmms_textdom.core.errors import UsageError
    from lmms_textdom.integration.registry import check_model

    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="lmms-textdom", description="Measure text dominance in multimodal LLMs.")
    parser.add_argument("--version", action=VersionAction, help="this plugin's version and commit, and lmms-eval's, transformers' and torch's")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module, add, _, text) in COMMANDS.items():
        command = sub.add_parser(name, help=text)
        if argv and argv[0] == name:  # only the chosen command's module loads (the others import torch, matplotlib)
            getattr(importlib.import_module(module), add)(command)
    args = parser.parse_args(argv)
    try:
        if getattr(args, "model", None) is not None:  # before anything builds or loads
            check_model(args.model)
        module, _, run, _ = COMMANDS[args.command]
        getattr(importlib.import_module(module), run)(args)
    except UsageError as exc:
        parser.exit(2, f"lmms-textdom {args.command}: error: {exc}\n")


if __name__ == "__main__":
    main()
