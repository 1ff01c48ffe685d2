"""The paper's figures from the table's rows, as PNG and SVG (matplotlib, no display needed).

- ``mdi_by_run``: early / middle / late MDI of every measured run on a log axis, with MDI = 1 (Figure 2).
- ``layers``: MDI and AEI of every single layer for chosen runs (Figure 3, finer than three groups).
- ``replication`` / ``pruning``: MDI and AEI against the non-text replication factor or the pruning
  ratio, for runs that differ in nothing else (Figure 4, Table 2).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib import rc_context
from matplotlib.figure import Figure
from matplotlib.ticker import LogFormatter

from lmms_textdom.core.metrics import GROUPS, METRICS, aggregate_layers, layer_groups
from lmms_textdom.report.labels import distinct_tags
from lmms_textdom.report.runs import settings_key
from lmms_textdom.report.table import Row

GROUP_COLOURS = {"early": "#4c72b0", "middle": "#dd8452", "late": "#55a868"}
MARKERS = "osD^v<>ph*"
#: Runs drawn in the per-layer figure when none are chosen.
DEFAULT_LAYER_RUNS = 6


@dataclass
class Sweep:
    label: str
    points: list[tuple[float, Row]]  # (factor value, row), sorted by value


def save(figure: Figure, out_dir: Path, name: str) -> list[Path]:
    paths = [out_dir / f"{name}.png", out_dir / f"{name}.svg"]
    with rc_context({"svg.fonttype": "none"}):  # SVG text stays text: searchable and editable
        for path in paths:
            figure.savefig(path, dpi=150, bbox_inches="tight")
    return paths


class PlainLogFormatter(LogFormatter):
    """matplotlib's choice of which log ticks to label, written as plain numbers."""

    def __call__(self, x, pos=None):
        return f"{x:.3g}" if super().__call__(x, pos) else ""


def log_axis(ax, label: str) -> None:
    """Log y axis with plain tick labels (1.2, not 1.2 x 10^0) and the dashed line at 1."""
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(PlainLogFormatter())
    ax.yaxis.set_minor_formatter(PlainLogFormatter(minor_thresholds=(2, 0.5)))
    ax.axhline(1.0, color="black", linestyle="--", linewidth=1, label=label)


def legend_beside(ax) -> None:
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1))


def error_bars(rows: list[Row], key: str) -> tuple[np.ndarray, np.ndarray]:
    """Values and asymmetric error lengths (zero where a row has no interval); NaN for no value."""
    values, errors = [], []
    for row in rows:
        cell = row.cells.get(key)
        value = np.nan if cell is None or cell.value is None or cell.value <= 0 else cell.value
        values.append(value)
        known = cell is not None and cell.low is not None and not np.isnan(value)
        # clipped at 0: a percentile interval need not contain the point itself
        errors.append((max(0.0, value - cell.low), max(0.0, cell.high - value)) if known else (0.0, 0.0))
    return np.array(values), np.array(errors).T.reshape(2, -1)


def mdi_by_run(rows: list[Row], aggregation: str, out_dir: Path) -> list[Path]:
    width = 0.26
    figure = Figure(figsize=(min(40, max(6, 1.3 * len(rows) + 2)), 4.8))
    ax = figure.subplots()
    x = np.arange(len(rows))
    for i, group in enumerate(GROUPS):
        values, errors = error_bars(rows, f"mdi_{group}")
        ax.bar(x + (i - 1) * width, values, width, yerr=errors, capsize=3, color=GROUP_COLOURS[group], label=group)
    log_axis(ax, "MDI = 1 (equal attention per token)")
    ax.set_xticks(x, [f"{r.model}\n{r.dataset}\n{r.setting}" + (f"\n({r.tag})" if r.tag else "") for r in rows], fontsize=8)
    ax.set_ylabel("MDI (log scale)")
    ax.set_title(f"MDI per run ({aggregation}; whiskers: bootstrap interval)")
    legend_beside(ax)
    return save(figure, out_dir, "mdi_by_run")


def layer_curves(rows: list[Row], aggregation: str, out_dir: Path) -> list[Path]:
    depths = {row.run.samples[0].num_layers for row in rows}
    relative = len(depths) > 1  # models of different depth: compare at the same relative depth
    figure = Figure(figsize=(12, 4.5))
    axes = figure.subplots(1, 2)
    for i, row in enumerate(rows):
        layers = row.run.samples[0].num_layers
        curves = [aggregate_layers(row.run.samples, [layer], aggregation) for layer in range(layers)]
        x = np.arange(layers) / max(1, layers - 1) if relative else np.arange(layers)
        for ax, metric in zip(axes, METRICS):
            y = [np.nan if c[metric].value is None else c[metric].value for c in curves]
            ax.plot(x, y, marker=MARKERS[i % len(MARKERS)], markersize=4, label=row.label)
    if not relative:  # shade the layers that make up the table's three groups
        for group, idx in layer_groups(depths.pop()).items():
            for ax in axes:
                ax.axvspan(min(idx) - 0.4, max(idx) + 0.4, color=GROUP_COLOURS[group], alpha=0.12)
    for ax, metric in zip(axes, METRICS):
        log_axis(ax, f"{metric.upper()} = 1")
        ax.set_xlabel("relative depth (layer / (layers - 1))" if relative else "layer (shaded: the table's early, middle, late layers)")
        ax.set_ylabel(f"{metric.upper()} per layer (log scale)")
        ax.set_title(f"{metric.upper()} per layer ({aggregation})")
    legend_beside(axes[1])
    return save(figure, out_dir, "layers")


def sweeps(rows: list[Row], factor: str) -> list[Sweep]:
    """Runs that differ only in ``factor`` ("replication" or "pruning"), with at least two values."""
    varied = ("nontext_repeat",) if factor == "replication" else ("prune_method", "prune_ratio")
    families: dict[tuple, list[Row]] = {}
    for row in rows:
        run = row.run
        families.setdefault((run.adapter, run.pretrained, run.task, settings_key(run.settings, varied)), []).append(row)
    found = []
    for members in families.values():
        if factor == "replication":
            candidates = {"": [(float(r.run.settings["nontext_repeat"]), r) for r in members]}
        else:  # the unpruned run belongs to the sweep of every pruning method
            base = [(0.0, r) for r in members if not r.run.settings["prune_ratio"]]
            methods = {r.run.settings["prune_method"] for r in members if r.run.settings["prune_ratio"]}
            candidates = {m: base + [(100 * r.run.settings["prune_ratio"], r) for r in members if r.run.settings["prune_method"] == m and r.run.settings["prune_ratio"]] for m in methods}
        for method, points in candidates.items():
            if len({x for x, _ in points}) >= 2:
                first = points[0][1]
                found.append(Sweep(" ".join(filter(None, (first.model, first.dataset, method))), sorted(points, key=lambda p: p[0])))
    tags = distinct_tags([(s.label, s.points[0][1].run.date, s.points[0][1].run.results_file) for s in found])
    for sweep, tag in zip(found, tags):
        sweep.label += f" ({tag})" if tag else ""
    return found


def sweep_figure(found: list[Sweep], factor: str, aggregation: str, out_dir: Path) -> list[Path]:
    figure = Figure(figsize=(12, 4.5))
    axes = figure.subplots(1, 2)
    span = max(value for sweep in found for value, _ in sweep.points) - min(value for sweep in found for value, _ in sweep.points)
    for i, sweep in enumerate(found):
        for ax, metric in zip(axes, METRICS):
            for g, group in enumerate(GROUPS):
                x = [value + (g - 1) * 0.01 * span for value, _ in sweep.points]  # dodge so whiskers do not overlap
                values, errors = error_bars([row for _, row in sweep.points], f"{metric}_{group}")
                ax.errorbar(x, values, yerr=errors, marker=MARKERS[i % len(MARKERS)], capsize=3, color=GROUP_COLOURS[group], label=f"{sweep.label}: {group}")
    for ax, metric in zip(axes, METRICS):
        log_axis(ax, f"{metric.upper()} = 1")
        ax.set_xlabel("replication factor of the non-text tokens" if factor == "replication" else "non-text tokens pruned (%)")
        ax.set_ylabel(f"{metric.upper()} (log scale)")
        ax.set_title(f"{metric.upper()} against {'replication' if factor == 'replication' else 'pruning ratio'} ({aggregation})")
    legend_beside(axes[1])
    return save(figure, out_dir, factor)


def choose_layer_runs(rows: list[Row], patterns: list[str] | None, notes: list[str]) -> list[Row]:
    if patterns:
        chosen = [r for r in rows if any(p.lower() in r.label.lower() for p in patterns)]
        if not chosen:
            notes.append(f"--layer-runs {' '.join(patterns)} matched none of: {'; '.join(r.label for r in rows)}")
        return chosen
    if len(rows) > DEFAULT_LAYER_RUNS:
        notes.append(f"the per-layer figure shows the first {DEFAULT_LAYER_RUNS} of {len(rows)} measured runs; choose others with --layer-runs")
    return rows[:DEFAULT_LAYER_RUNS]


def draw_all(rows: list[Row], aggregation: str, out_dir: Path, layer_patterns: list[str] | None = None) -> tuple[list[Path], list[str]]:
    """Every figure the rows allow; notes say which could not be drawn and why."""
    out_dir.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    measured = [r for r in rows if any(c.value is not None for c in r.cells.values())]
    if not measured:
        return [], ["no run has MDI/AEI values, so no figures were drawn"]
    written = mdi_by_run(measured, aggregation, out_dir)
    with_samples = [r for r in measured if r.run.samples]
    chosen = choose_layer_runs(with_samples, layer_patterns, notes)
    if chosen:
        written += layer_curves(chosen, aggregation, out_dir)
    elif not with_samples:
        notes.append("no run has a readable sample log, so the per-layer figure was not drawn")
    for factor in ("replication", "pruning"):
        found = sweeps(measured, factor)
        if found:
            written += sweep_figure(found, factor, aggregation, out_dir)
        else:
            notes.append(f"no {factor} sweep (runs that differ only in {'nontext_repeat' if factor == 'replication' else 'the pruning ratio'}), so {factor}.png was not drawn")
    return written, notes
