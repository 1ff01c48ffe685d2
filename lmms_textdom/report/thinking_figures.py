"""Figures of thinking models' answers (matplotlib, no display needed).

- ``thinking_length``: per layer group, the answer segment's MDI against the thinking segment's
  length, one point per sample and run, with the fitted power-law trend and its bootstrap band
  (``thinking_views.py``).
- ``thinking_position``: MDI and AEI along the thinking segment (its 16 relative bins), one line per
  run, as ``answer_position`` draws them along the whole answer: the curve along a long chain.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from lmms_textdom.core.metrics import GROUPS, METRICS
from lmms_textdom.report.answer_views import answer_curve
from lmms_textdom.report.bootstrap import seed_sequence
from lmms_textdom.report.duplicates import identity
from lmms_textdom.report.figures import MARKERS, PlainLogFormatter, legend_beside, log_axis, save
from lmms_textdom.report.table import Row
from lmms_textdom.report.thinking_views import length_points, power_fit

#: Runs drawn per figure (the first ones in table order).
MAX_RUNS = 6


def thinking_samples(row: Row) -> list:
    """The thinking segments of a run's samples that have them."""
    return [s.segments.thinking for s in row.run.samples or () if s.segments is not None]


def thinking_length(rows: list[Row], resamples: int, seed: int, out_dir: Path, notes: list[str]) -> list[Path]:
    figure = Figure(figsize=(15, 4.6))
    axes = figure.subplots(1, len(GROUPS))
    runs, fits = {}, {group: [] for group in GROUPS}  # scatter handle per run; fitted lines per panel
    for i, row in enumerate(rows[:MAX_RUNS]):
        for ax, group in zip(axes, GROUPS):
            points = length_points(row.run.samples, group)
            if points is None or not len(points.rows):
                continue
            colour = f"C{i}"
            runs[row.label] = ax.scatter(points.rows, points.mdi, s=14, alpha=0.6, color=colour, marker=MARKERS[i % len(MARKERS)])
            rng = np.random.default_rng(seed_sequence(seed, f"thinking_length:{group}:{identity(row.run)!r}")) if resamples else None
            fit = power_fit(points, resamples, rng)
            if fit is None:
                notes.append(f"{row.label}, {group} layers: fewer than two distinct thinking lengths, so no trend is fitted")
                continue
            interval = f" [{fit.slope_interval[0]:.2f}, {fit.slope_interval[1]:.2f}]" if fit.slope_interval else ""
            fits[group] += ax.plot(fit.grid, fit.line, color=colour, linewidth=1.5, label=f"slope {fit.slope:.2f}{interval}")
            if fit.band is not None:
                ax.fill_between(fit.grid, fit.band[0], fit.band[1], color=colour, alpha=0.15)
    if not runs:
        return []
    for ax, group in zip(axes, GROUPS):
        log_axis(ax, "MDI = 1")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(PlainLogFormatter())
        ax.xaxis.set_minor_formatter(PlainLogFormatter(minor_thresholds=(2, 0.5)))
        ax.set_xlabel("thinking length (tokens, log scale)")
        ax.set_title(f"answer MDI, {group} layers")
        if fits[group]:  # each run's slope in its own colour, per panel
            ax.legend(handles=fits[group], fontsize=7, loc="best")
    axes[0].set_ylabel("MDI of the answer after the thinking (log scale)")
    figure.suptitle(
        "Does a longer chain leave less attention for the image? One point per sample; line: log-log least-squares fit "
        "(slope: MDI ~ length^slope); shaded: bootstrap interval", fontsize=10,
    )  # fmt: skip
    figure.legend(list(runs.values()), list(runs), fontsize=7, loc="upper left", bbox_to_anchor=(0.91, 0.88))
    return save(figure, out_dir, "thinking_length")


def thinking_position(rows: list[Row], resamples: int, seed: int, out_dir: Path) -> list[Path]:
    figure = Figure(figsize=(15, 7))
    axes = figure.subplots(2, len(GROUPS), sharex=True)
    drawn = False
    for i, row in enumerate(rows[:MAX_RUNS]):
        samples = thinking_samples(row)
        for m, metric in enumerate(METRICS):
            for g, group in enumerate(GROUPS):
                curve = answer_curve(samples, group, metric, resamples, seed, "thinking:" + repr(identity(row.run)))
                if curve is None:
                    continue
                x = (np.arange(len(curve)) + 0.5) / len(curve)
                line = axes[m, g].plot(x, curve[:, 0], marker=MARKERS[i % len(MARKERS)], markersize=3, label=row.label)[0]
                axes[m, g].fill_between(x, curve[:, 1], curve[:, 2], color=line.get_color(), alpha=0.15)
                drawn = True
    if not drawn:
        return []
    for m, metric in enumerate(METRICS):
        for g, group in enumerate(GROUPS):
            log_axis(axes[m, g], f"{metric.upper()} = 1")
            axes[m, g].set_title(f"{metric.upper()}, {group} layers")
            if m == len(METRICS) - 1:
                axes[m, g].set_xlabel("relative position in the thinking (bin centre)")
        axes[m, 0].set_ylabel(f"{metric.upper()} per bin (log scale)")
    figure.suptitle("Text dominance along the reasoning chain: mean over samples per bin; shaded: bootstrap interval")
    legend_beside(axes[0, -1])
    return save(figure, out_dir, "thinking_position")


def draw(rows: list[Row], resamples: int, seed: int, out_dir: Path) -> tuple[list[Path], list[str]]:
    """Both figures for the runs whose samples have thinking segments; notes say what could not be drawn."""
    with_segments = [r for r in rows if any(s.segments is not None for s in r.run.samples or ())]
    if not with_segments:
        return [], ["no sample log holds thinking segments (answers with thinking markers), so thinking_length.png and thinking_position.png were not drawn"]
    out_dir.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    written = thinking_length(with_segments, resamples, seed, out_dir, notes)
    if not written:
        notes.append("no answer closed its thinking (all truncated), so thinking_length.png was not drawn")
    return written + thinking_position(with_segments, resamples, seed, out_dir), notes
