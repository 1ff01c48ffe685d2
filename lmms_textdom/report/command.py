"""``lmms-textdom report``: read runs, print the table, write CSV, HTML and figures."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lmms_textdom.core.errors import UsageError
from lmms_textdom.core.metrics import AGGREGATIONS
from lmms_textdom.report import html, render
from lmms_textdom.report.duplicates import keep_latest
from lmms_textdom.report.runs import load_runs
from lmms_textdom.report.answer_views import EXTRA_COLUMNS
from lmms_textdom.report.table import add_extra_cells, build_rows, caption, columns_with, extra_caption

DEFAULT_OUT = Path("textdom-report")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH", help="lmms-eval --output_path folders, *_results.json or *_samples_<task>.jsonl files")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"folder for the CSV, HTML and figures (default: {DEFAULT_OUT})")
    parser.add_argument("--aggregation", choices=AGGREGATIONS, default="mean", help="how per-sample values become one cell (default: mean)")
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples per run; 0 = no intervals (default: 1000)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")
    parser.add_argument("--layer-runs", nargs="+", metavar="TEXT", help='runs in the per-layer figure: text found in "model dataset setting"')
    parser.add_argument("--key-layers", nargs="+", type=int, metavar="LAYER", help="layers in the key projection figure (runs with key_stats; default: first, middle, last)")
    parser.add_argument(
        "--columns", nargs="+", choices=sorted(EXTRA_COLUMNS), default=[],
        help="optional column sets beside the paper's: content (MDI/AEI with T = the task's own text), decay (late over early answer MDI), "
        "segments (a thinking model's MDI over its reasoning and over its answer), "
        "spread (entropy and top-10%% share of the non-text attention map; runs with attention_maps=true)",
    )  # fmt: skip
    parser.add_argument(
        "--samples", type=int, default=0, metavar="N",
        help="also write a sample viewer per run with attention maps (model_arg attention_maps=true): its first N samples (default: 0, none)",
    )  # fmt: skip
    parser.add_argument("--no-figures", action="store_true", help="write the table only (and, with --samples, the viewer pages without PNGs)")
    parser.add_argument("--progress", action="store_true", help="progress bars even on small inputs, and when stderr is not a terminal")


def paired_sweeps(paths, out: Path, resamples: int, seed: int, figures: bool) -> tuple[list[str], list[Path], list[str]]:
    """The paired table and figure of every sweep folder (``textdom_sweep.json``) under ``paths``."""
    from lmms_textdom.report.paired_sweep import find_manifests, write_all

    tables, written, notes = [], [], []
    for number, manifest in enumerate(find_manifests(paths)):
        folder = out / "sweeps" / (manifest.parent.name or f"sweep{number}")
        try:
            text, files = write_all(manifest, folder, resamples, seed, figures)
        except (OSError, ValueError, KeyError) as exc:
            notes.append(f"sweep {manifest.parent}: not drawn ({exc})")
            continue
        tables.append(text)
        written += files
    return tables, written, notes


def run_report(args: argparse.Namespace) -> list[Path]:
    """Everything the command does; returns the files written."""
    if args.resamples < 0:
        raise UsageError(f"--resamples must be 0 (no intervals) or more, got {args.resamples}")
    if args.samples < 0:
        raise UsageError(f"--samples must be 0 (no viewer) or more, got {args.samples}")
    loaded = load_runs(args.paths, args.progress)
    runs, duplicate_notes = keep_latest(loaded.runs)
    if not runs:
        raise UsageError("no readable run; rerun lmms-eval or pass other files:\n  " + "\n  ".join(loaded.notes))
    rows, table_notes = build_rows(runs, args.aggregation, args.resamples, args.seed, args.progress)
    add_extra_cells(rows, args.columns, args.resamples, args.seed)
    columns = columns_with(args.columns, rows)
    notes = loaded.notes + duplicate_notes + table_notes
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "leaderboard.md", out / "leaderboard.csv", out / "leaderboard.html"]
    if not args.no_figures:
        from lmms_textdom.report import figures  # matplotlib loads only when figures are drawn

        figure_files, figure_notes = figures.draw_all(rows, args.aggregation, out / "figures", args.layer_runs)
        written += figure_files
        notes += figure_notes
        from lmms_textdom.report import answer_figures

        figure_files, figure_notes = answer_figures.draw(rows, args.resamples, args.seed, out / "figures")
        written += figure_files
        notes += figure_notes
        from lmms_textdom.report import thinking_figures

        figure_files, figure_notes = thinking_figures.draw(rows, args.resamples, args.seed, out / "figures")
        written += figure_files
        notes += figure_notes
    from lmms_textdom.report import key_space

    key_files, key_notes, key_table = key_space.write(rows, out, not args.no_figures, args.key_layers)
    written += key_files
    notes += key_notes
    sweep_tables, sweep_files, sweep_notes = paired_sweeps(args.paths, out, args.resamples, args.seed, not args.no_figures)
    written += sweep_files
    notes += sweep_notes
    if args.samples:
        from lmms_textdom.report import viewers

        viewer_files, viewer_notes = viewers.write(rows, out, args.samples, not args.no_figures)
        written += viewer_files
        notes += viewer_notes
    for note in notes:
        print(f"lmms-textdom report: {note}", file=sys.stderr)
    title = caption(args.aggregation, args.resamples, args.seed) + extra_caption(args.columns)
    print(render.markdown(rows, title, [], columns))  # the notes went to stderr just above
    if key_table:
        print(key_table)
    for table in sweep_tables:
        print(f"\n{table}")
    written[0].write_text(render.markdown(rows, title, notes, columns, provenance=True))
    render.write_csv(rows, args.aggregation, written[1], columns)
    written[2].write_text(html.page(rows, title, notes, columns))
    print("wrote:\n" + "\n".join(f"  {path}" for path in written))
    return written
