"""Thinking models in the report (numpy only): the answer's MDI against the length of the reasoning before it.

Per run and layer group, one point per sample with both segments: x = rows (tokens) of its thinking
segment, y = MDI of its answer segment. The trend is a power law fitted by least squares on
log10 x and log10 y (``log10 MDI = a + b log10 rows``; b < 0: the longer the reasoning, the less
text dominates the answer, b > 0: the more), with a seeded percentile-bootstrap interval over
samples for the fitted line and for b. Samples with no thinking rows, or an undefined or
non-positive answer MDI, have no place on log axes and are left out (counted).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from lmms_textdom.core.metrics import layer_groups, sample_dominance
from lmms_textdom.core.stats import SampleStats
from lmms_textdom.report.bootstrap import CONFIDENCE

#: points on the fitted line
GRID = 50


@dataclass
class LengthPoints:
    rows: np.ndarray  # thinking rows per sample
    mdi: np.ndarray  # the answer segment's MDI
    left_out: int  # samples with segments that have no point (no thinking row, undefined MDI)


def length_points(samples: list[SampleStats], group: str) -> LengthPoints | None:
    """The points of one run and layer group; None when no sample has an answer after its thinking."""
    found = [s.segments for s in samples if s.segments is not None and s.segments.answer is not None]
    if not found:
        return None
    rows, mdi = [], []
    for segments in found:
        answer = segments.answer
        value = sample_dominance(answer, layer_groups(answer.num_layers)[group]).mdi
        if segments.thinking.rows > 0 and value is not None and value > 0:
            rows.append(segments.thinking.rows)
            mdi.append(value)
    return LengthPoints(np.array(rows, dtype=float), np.array(mdi, dtype=float), len(found) - len(rows))


@dataclass
class PowerFit:
    slope: float
    intercept: float
    grid: np.ndarray  # thinking rows where the line is drawn
    line: np.ndarray  # fitted MDI on the grid
    band: np.ndarray | None  # (2, grid) bootstrap low and high, None without resamples
    slope_interval: tuple[float, float] | None


def _fit(lx: np.ndarray, ly: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares slope and intercept of each row of lx, ly (replicates x points); NaN where x does not vary."""
    mx, my = lx.mean(axis=-1, keepdims=True), ly.mean(axis=-1, keepdims=True)
    var = ((lx - mx) ** 2).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        slope = np.where(var > 0, ((lx - mx) * (ly - my)).sum(axis=-1) / var, np.nan)
    return slope, my[..., 0] - slope * mx[..., 0]


def power_fit(points: LengthPoints, resamples: int, rng: np.random.Generator | None) -> PowerFit | None:
    """The power-law trend of the points; None with fewer than two distinct thinking lengths."""
    if len(np.unique(points.rows)) < 2:
        return None
    lx, ly = np.log10(points.rows), np.log10(points.mdi)
    slope, intercept = (float(v) for v in _fit(lx, ly))
    grid = np.logspace(lx.min(), lx.max(), GRID)
    line = 10 ** (intercept + slope * np.log10(grid))
    if not resamples or rng is None:
        return PowerFit(slope, intercept, grid, line, None, None)
    drawn = rng.integers(0, len(lx), size=(resamples, len(lx)))
    slopes, intercepts = _fit(lx[drawn], ly[drawn])
    kept = ~np.isnan(slopes)
    tail = 100 * (1 - CONFIDENCE) / 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        lines = intercepts[kept, None] + slopes[kept, None] * np.log10(grid)[None, :]
        band = 10 ** np.percentile(lines, [tail, 100 - tail], axis=0)
        low, high = np.percentile(slopes[kept], [tail, 100 - tail])
    return PowerFit(slope, intercept, grid, line, band, (float(low), float(high)))
