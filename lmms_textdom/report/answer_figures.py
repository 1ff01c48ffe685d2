"""Figures of the views beyond the paper (matplotlib, no display needed).

- ``answer_position``: MDI and AEI against relative position in the answer (16 bins), one line
  per run, per layer group, with a shaded bootstrap interval per bin.
- ``text_parts``: per run, each text sub-class's (sink, template, task, family text) and each
  non-text class's share of the prompt attention, per layer (stacked to 1).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from lmms_textdom.core.metrics import GROUPS, METRICS
from lmms_textdom.report.answer_views import answer_curve, text_part_shares
from lmms_textdom.report.duplicates import identity
from lmms_textdom.report.figures import MARKERS, legend_beside, log_axis, save
from lmms_textdom.report.table import Row

#: Runs drawn per figure (the first ones in table order).
MAX_RUNS = 6
PART_COLOURS = {"sink": "#8c8c8c", "template": "#c4ad66", "task": "#4c72b0"}


def answer_position(rows: list[Row], resamples: int, seed: int, out_dir: Path) -> list[Path]:
    figure = Figure(figsize=(15, 7))
    axes = figure.subplots(2, len(GROUPS), sharex=True)
    drawn = False
    for i, row in enumerate(rows[:MAX_RUNS]):
        for m, metric in enumerate(METRICS):
            for g, group in enumerate(GROUPS):
                curve = answer_curve(row.run.samples, group, metric, resamples, seed, repr(identity(row.run)))
                if curve is None:
                    continue
                x = (np.arange(len(curve)) + 0.5) / len(curve)
                ax = axes[m, g]
                line = ax.plot(x, curve[:, 0], marker=MARKERS[i % len(MARKERS)], markersize=3, label=row.label)[0]
                ax.fill_between(x, curve[:, 1], curve[:, 2], color=line.get_color(), alpha=0.15)
                drawn = True
    if not drawn:
        return []
    for m, metric in enumerate(METRICS):
        for g, group in enumerate(GROUPS):
            ax = axes[m, g]
            log_axis(ax, f"{metric.upper()} = 1")
            ax.set_title(f"{metric.upper()}, {group} layers")
            if m == len(METRICS) - 1:
                ax.set_xlabel("relative position in the answer (bin centre)")
        axes[m, 0].set_ylabel(f"{metric.upper()} per bin (log scale)")
    figure.suptitle("Text dominance along the answer: mean over samples per bin; shaded: bootstrap interval")
    legend_beside(axes[0, -1])
    return save(figure, out_dir, "answer_position")


def text_parts(rows: list[Row], out_dir: Path) -> list[Path]:
    found = [(row, text_part_shares(row.run.samples)) for row in rows]
    found = [(row, shares) for row, shares in found if shares is not None][:MAX_RUNS]
    if not found:
        return []
    figure = Figure(figsize=(5 * len(found) + 2, 4.2))
    axes = np.atleast_1d(figure.subplots(1, len(found), squeeze=False)[0])
    for ax, (row, (names, shares)) in zip(axes, found):
        layers = np.arange(shares.shape[1])
        colours = [PART_COLOURS.get(n) for n in names]
        ax.stackplot(layers, np.nan_to_num(shares), labels=names, colors=[c or f"C{i + 3}" for i, c in enumerate(colours)], alpha=0.85)
        ax.set_ylim(0, 1)
        ax.set_xlabel("layer")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(row.label, fontsize=9)
    axes[0].set_ylabel("share of the attention on the prompt")
    figure.suptitle("Where the attention goes: text sub-classes and non-text classes per layer (mean over samples)")
    legend_beside(axes[-1])
    return save(figure, out_dir, "text_parts")


def draw(rows: list[Row], resamples: int, seed: int, out_dir: Path) -> tuple[list[Path], list[str]]:
    """Both figures for the runs with sample logs; notes say which could not be drawn."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with_samples = [r for r in rows if r.run.samples]
    written, notes = answer_position(with_samples, resamples, seed, out_dir), []
    if not written:
        notes.append("no sample log holds binned per-row masses, so answer_position.png was not drawn")
    parts = text_parts(with_samples, out_dir)
    if not parts:
        notes.append("no sample log holds text sub-classes, so text_parts.png was not drawn")
    return written + parts, notes
