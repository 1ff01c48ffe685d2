"""``lmms-textdom knockout``: does the answer need the non-text input at each depth?

One real lmms-eval run without knock-out (the baseline), then one per window of ``--window``
consecutive language-model layers (moved by ``--stride``) with ``knockout_layers`` set to it and
``knockout_score=true``. Per window: the task's accuracy, and two signals that need no correct
answer, from each sample's knock-out record: the share of samples whose answer differs from the
unmasked model's, and the mean change in log-probability of the unmasked model's answer. The
figure draws them against layer depth, with the baseline's MDI of every single layer.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

from lmms_textdom.core.errors import UsageError
from lmms_textdom.core.metrics import aggregate_layers
from lmms_textdom.integration.hook import DETAIL
from lmms_textdom.integration.registry import model_class
from lmms_textdom.integration.runner import DEFAULT_CACHE
from lmms_textdom.progress import progress_bar
from lmms_textdom.report.paired_sweep import write_manifest
from lmms_textdom.report.runs import SAMPLES_INFIX, Run, load_runs
from lmms_textdom.sweeps.grid import Point, make_grid


def window_spec(low: int, high: int) -> str:
    """The knock-out's layers as model_args and run folders write them: '5' or '4-7'."""
    return str(low) if low == high else f"{low}-{high}"


@dataclass
class Window:
    layers: tuple[int, int]  # first and last layer knocked out
    accuracy: float | None
    changed: float | None  # share of samples whose answer differs from the unmasked model's
    logprob_change: float | None  # mean over samples of the change in log p of the unmasked answer
    compared: int  # samples with a knock-out record

    @property
    def spec(self) -> str:
        return window_spec(*self.layers)

    @property
    def centre(self) -> float:
        return sum(self.layers) / 2


def windows(num_layers: int, window: int, stride: int) -> list[tuple[int, int]]:
    if window < 1 or stride < 1:
        raise UsageError(f"--window and --stride must be at least 1, got {window} and {stride}")
    if window > num_layers:
        raise UsageError(f"--window {window} is wider than the language model ({num_layers} layers)")
    spans = [(start, start + window - 1) for start in range(0, num_layers - window + 1, stride)]
    if spans[-1][1] < num_layers - 1:  # a stride that does not fit: one last window ends at the top
        spans.append((num_layers - window, num_layers - 1))
    return spans


def language_model_depth(pretrained: str) -> int | None:
    """``num_hidden_layers`` of the checkpoint's language model from its config.json, if it says."""
    from lmms_textdom.models.checkpoint import checkpoint_file

    config = json.loads(checkpoint_file(pretrained, "config.json").read_text())
    depth = (config.get("text_config") or config.get("llm_config") or {}).get("num_hidden_layers", config.get("num_hidden_layers"))
    return int(depth) if isinstance(depth, int) else None


def effects(run_dir: Path) -> list[dict]:
    """The per-sample knock-out records (model_arg knockout_score) of every sample log under ``run_dir``."""
    found = []
    for log in sorted(run_dir.rglob(f"*{SAMPLES_INFIX}*.jsonl")):
        for line in log.read_text().splitlines():
            record = json.loads(line)[DETAIL].get("knockout") if line.strip() else None
            if record:
                found.append(record)
    return found


def mean(values: list[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


def the_run(run_dir: Path, task: str) -> Run:
    runs = [r for r in load_runs([run_dir]).runs if r.task == task]
    if not runs:
        raise SystemExit(f"no results for task {task} under {run_dir}")
    return runs[-1]


def mdi_per_layer(run: Run) -> list[float | None]:
    if not run.samples:
        return []
    return [aggregate_layers(run.samples, [layer])["mdi"].value for layer in range(run.samples[0].num_layers)]


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def render(baseline: Run, found: list[Window], task: str) -> str:
    name = baseline.accuracy_metric or "accuracy"
    lines = [f"| layers knocked out | {name} | change in {name} | answers changed | change in log p of the answer | samples |", "|---" * 6 + "|"]
    lines.append(f"| none (baseline) | {_fmt(baseline.accuracy)} | | | | {baseline.evaluated} |")
    for w in found:
        delta = None if w.accuracy is None or baseline.accuracy is None else w.accuracy - baseline.accuracy
        lines.append(f"| {w.spec} | {_fmt(w.accuracy)} | {'' if delta is None else f'{delta:+.2f}'} | {_fmt(w.changed)} | {_fmt(w.logprob_change)} | {w.compared} |")
    return "\n".join(lines)


def write_csv(baseline: Run, found: list[Window], mdi: list[float | None], path: Path) -> None:
    with path.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["first_layer", "last_layer", "accuracy", "baseline_accuracy", "answers_changed", "logprob_change", "samples", "accuracy_metric"])
        for w in found:
            out.writerow([*w.layers, w.accuracy, baseline.accuracy, w.changed, w.logprob_change, w.compared, baseline.accuracy_metric])
        out.writerow([])
        out.writerow(["layer", "baseline_mdi"])
        for layer, value in enumerate(mdi):
            out.writerow([layer, value])


def figure(baseline: Run, found: list[Window], mdi: list[float | None], title: str, out_dir: Path) -> list[Path]:
    import numpy as np
    from matplotlib.figure import Figure

    from lmms_textdom.report.figures import log_axis, save

    fig = Figure(figsize=(9, 7))
    ax, below = fig.subplots(2, 1, sharex=True, height_ratios=(2, 1))
    x = [w.centre for w in found]
    width = found[0].layers[1] - found[0].layers[0] + 1
    span = (width - 1) / 2  # horizontal bars: the layers each window knocks out
    accuracy = [np.nan if w.accuracy is None else w.accuracy for w in found]
    ax.errorbar(x, accuracy, xerr=span, marker="o", capsize=3, color="#4c72b0", label=f"{baseline.accuracy_metric or 'accuracy'}, window knocked out")
    if baseline.accuracy is not None:
        ax.axhline(baseline.accuracy, color="#4c72b0", linestyle=":", label="accuracy without knock-out")
    changed = [np.nan if w.changed is None else w.changed for w in found]
    ax.errorbar(x, changed, xerr=span, marker="s", capsize=3, color="#c44e52", label="answers changed (share of samples)")
    ax.set_ylim(-0.02, 1.02)
    logprob = [np.nan if w.logprob_change is None else w.logprob_change for w in found]
    below.errorbar(x, logprob, xerr=span, marker="D", capsize=3, color="#8172b3")
    below.axhline(0, color="black", linewidth=0.8)
    below.set_ylabel("change in log p of the\nunmasked answer (mean, nats)")
    below.set_xlabel(f"language-model layer (window of {width}, drawn at its centre)")
    ax.set_ylabel("accuracy / share of samples")
    right = ax.twinx()
    layers = np.arange(len(mdi))
    right.plot(layers, [np.nan if v is None or v <= 0 else v for v in mdi], color="#55a868", linestyle="--", marker=".", label="MDI per layer (baseline)")
    log_axis(right, "MDI = 1")
    right.set_ylabel("MDI per layer, baseline (log scale)")
    handles = ax.get_legend_handles_labels()
    more = right.get_legend_handles_labels()
    ax.legend(handles[0] + more[0], handles[1] + more[1], fontsize=7, loc="upper left", bbox_to_anchor=(1.12, 1))
    ax.set_title(title, fontsize=9)
    return save(fig, out_dir, "knockout")


def run_knockout(
    pretrained: str | None = None,
    tasks: str | None = None,
    window: int = 2,
    stride: int = 1,
    output: Path | None = None,
    batch_size: int = 2,
    device: str = "cpu",
    model: str = "llava_hf_textdom",
    limit: int | None = None,
    key_stats: bool = False,
    model_args: str = "",
    gen_kwargs: str | None = None,
) -> str:
    """Baseline plus one run per window of knocked-out layers; prints and returns the table.

    Without ``pretrained``: the model's embedded default (``lmms_textdom.tiny.defaults``), offline.
    A preset of ``lmms-textdom sweep``: the runs resume alike, and ``lmms-textdom report`` draws them
    as a paired sweep against the baseline.
    """
    output = Path(output) if output else DEFAULT_CACHE / "runs" / "knockout"
    grid = make_grid(model, pretrained, model_args, tasks, output, gen_kwargs, limit, batch_size, device, model_class(model).DEFAULT_TASK)
    depth = language_model_depth(grid.pretrained)
    planned = windows(depth, window, stride) if depth is not None else None  # a bad window fails before any run
    task = grid.task
    with progress_bar("knockout: lmms-eval runs", 1 + len(planned) if planned else None, unit="run") as bar:
        grid.run(Point("baseline", "baseline", "key_stats=true" if key_stats else ""))
        bar.update(1)
        baseline = the_run(output / "baseline", task)
        if not baseline.samples:
            raise SystemExit(f"the baseline run of {task} has no per-layer attention in its sample log; the sweep needs a textdom model")
        spans = windows(baseline.samples[0].num_layers, window, stride)
        bar.total = 1 + len(spans)
        specs = [window_spec(low, high) for low, high in spans]
        for spec in specs:
            grid.run(Point(f"layers {spec} knocked out", f"ko_{spec}", f"knockout_layers={spec},knockout_score=true"))
            bar.update(1)
    write_manifest(output, model, grid.pretrained, grid.tasks, "baseline", [(f"knock-out {spec}", f"ko_{spec}") for spec in specs])
    name = Path(grid.pretrained).name if Path(grid.pretrained).exists() else grid.pretrained
    title = f"{model} {name}, {task}: knock-out windows of {window} layer(s), stride {stride}"
    return tabulate(output, task, spans, title)


def tabulate(output: Path, task: str, spans: list[tuple[int, int]], title: str) -> str:
    """Table, CSV and figure from the runs of a sweep under ``output`` (``baseline``, ``ko_<layers>``)."""
    baseline = the_run(output / "baseline", task)
    found = []
    for low, high in spans:
        run_dir = output / f"ko_{window_spec(low, high)}"
        records = effects(run_dir)
        changed = mean([float(r["answer_changed"]) for r in records])
        logprob = mean([r["logprob_knocked"] - r["logprob_plain"] for r in records])
        found.append(Window((low, high), the_run(run_dir, task).accuracy, changed, logprob, len(records)))
    mdi = mdi_per_layer(baseline)
    table = render(baseline, found, task)
    (output / "knockout.md").write_text(f"{title}\n\n{table}\n")
    write_csv(baseline, found, mdi, output / "knockout.csv")
    written = figure(baseline, found, mdi, title, output)
    print(f"\nKnock-out sweep ({title}):\n")
    print(table)
    print("wrote:\n" + "\n".join(f"  {p}" for p in (output / "knockout.md", output / "knockout.csv", *written)))
    return table


def add_arguments(parser) -> None:
    parser.add_argument("--pretrained", help="checkpoint (hub id or folder); default: the tiny built-in model, offline")
    parser.add_argument("--model", default="llava_hf_textdom", help="lmms-eval model id; without --pretrained, its tiny embedded default")
    parser.add_argument("--tasks", help="default: the model's own task (DEFAULT_TASK of its adapter, e.g. mmmu_pro_textdom)")
    parser.add_argument("--model-args", default="", help="further model_args for every run, e.g. graph_tower=/path/clip_gt_arxiv_pub")
    parser.add_argument("--gen-kwargs", help="lmms-eval --gen_kwargs for every run (embedded default: short answers)")
    parser.add_argument("--window", type=int, default=2, help="consecutive layers knocked out per run (default 2)")
    parser.add_argument("--stride", type=int, default=1, help="layers the window moves between runs (default 1)")
    parser.add_argument("--key-stats", action="store_true", help="also sample key vectors in the baseline run (key-space table in the report)")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--limit", type=int, help="documents per task (quick looks only)")
    parser.add_argument("--output", type=Path, help="folder for the runs, table and figure (default .textdom-cache/runs/knockout)")


def run_from_args(args) -> str:
    return run_knockout(
        pretrained=args.pretrained, tasks=args.tasks, window=args.window, stride=args.stride, output=args.output,
        batch_size=args.batch_size, device=args.device, model=args.model, limit=args.limit, key_stats=args.key_stats,
        model_args=args.model_args, gen_kwargs=args.gen_kwargs,
    )  # fmt: skip
