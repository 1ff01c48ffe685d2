"""Table cells and curves beyond the paper's layout: the content variant and the answer-position view.

Optional columns (``--columns content decay spread``), each the mean of the per-sample values that
are defined, with a seeded percentile-bootstrap interval over samples (as the main cells):

- ``content``: content MDI / AEI per layer group (T = the task's own text, ``core/views.py``);
- ``decay``: per layer group, MDI of the answer's last quarter over its first quarter;
- ``spread``: per layer group, the entropy of the normalized non-text attention map and the share
  of non-text attention on its top 10 % of positions (``core/attention_maps.py``; runs with
  ``attention_maps=true`` only).

The answer-position curve: per run, layer group and relative bin, the mean over samples of the
bin's MDI (AEI), with a bootstrap interval per bin.
"""

from __future__ import annotations

import warnings

import numpy as np

from lmms_textdom.core.metrics import GROUPS, METRICS
from lmms_textdom.core.segments import ANSWER, THINKING, segment_values
from lmms_textdom.core.stats import SampleStats
from lmms_textdom.core.views import content_values, decay_values, step_dominance
from lmms_textdom.report.bootstrap import CONFIDENCE, seed_sequence

EXTRA_COLUMNS = {
    "content": tuple(f"content_{m}_{g}" for g in GROUPS for m in METRICS),
    "decay": tuple(f"decay_{g}" for g in GROUPS),
    "segments": (*(f"mdi_{g}_{s}" for g in GROUPS for s in (THINKING, ANSWER)), f"rows_{THINKING}", "truncated"),
    "spread": tuple(f"{k}_{g}" for g in GROUPS for k in ("entropy", "top10")),
}
HEADERS = {
    **{f"content_{m}_{g}": f"{g} content {m.upper()}" for g in GROUPS for m in METRICS},
    **{f"decay_{g}": f"{g} decay" for g in GROUPS},
    **{f"mdi_{g}_{s}": f"{g} MDI {s}" for g in GROUPS for s in (THINKING, ANSWER)},
    f"rows_{THINKING}": "thinking rows",
    "truncated": "truncated",
    **{f"entropy_{g}": f"{g} entropy" for g in GROUPS},
    **{f"top10_{g}": f"{g} top-10%" for g in GROUPS},
}
CAPTIONS = {
    "content": "content MDI / AEI: T = the task's own text only (sink, template and family text left out)",
    "decay": "decay: MDI of the answer's last quarter over its first quarter (> 1: text dominance grows along the answer)",
    "segments": (
        "MDI thinking / answer: over the rows of a thinking model's reasoning (between its markers) and of the answer "
        "after it, samples without markers left out; thinking rows: tokens of the reasoning; truncated: share of "
        "answers whose reasoning never closed (they have no answer segment)"
    ),
    "spread": "entropy: of the normalized non-text attention map (nats); top-10%: share of non-text attention on its top 10 % of positions",
}


def spread_cells(spread: dict | None) -> dict[str, float | None]:
    """``{"entropy_early": ..., "top10_early": ...}`` of one sample's spread record (empty without maps)."""
    if not spread:
        return {}
    return {f"{short}_{g}": (spread.get(g) or {}).get(key) for g in GROUPS for short, key in (("entropy", "entropy"), ("top10", "top10_share"))}


def sample_values(samples: list[SampleStats], keys: tuple[str, ...], spreads: list[dict | None] | None = None) -> dict[str, np.ndarray]:
    """Per key, one value per sample (NaN where undefined or not recorded)."""
    segments = not set(keys).isdisjoint(EXTRA_COLUMNS["segments"])
    spreads = spreads or [None] * len(samples)
    rows = [
        {**content_values(s), **decay_values(s), **(segment_values(s) if segments else {}), **spread_cells(p)}
        for s, p in zip(samples, spreads)
    ]
    return {k: np.array([np.nan if r.get(k) is None else r[k] for r in rows], dtype=float) for k in keys}


def mean_and_interval(values: np.ndarray, resamples: int, rng: np.random.Generator | None) -> tuple[float | None, float | None, float | None, int]:
    """(mean of the defined values, low, high, how many defined); None where nothing is defined."""
    defined = int(np.sum(~np.isnan(values)))
    if not defined:
        return None, None, None, 0
    mean = float(np.nanmean(values))
    if not resamples or rng is None:
        return mean, None, None, defined
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-undefined resamples give NaN, dropped below
        drawn = np.nanmean(values[rng.integers(0, len(values), size=(resamples, len(values)))], axis=1)
    drawn = drawn[~np.isnan(drawn)]
    tail = 100 * (1 - CONFIDENCE) / 2
    low, high = np.percentile(drawn, [tail, 100 - tail])
    return mean, float(low), float(high), defined


def extra_cells(
    samples: list[SampleStats], columns: list[str], resamples: int, seed: int, key: str, spreads: list[dict | None] | None = None
) -> dict[str, tuple]:  # fmt: skip
    """``{"content_mdi_early": (value, low, high, defined), ...}`` for the chosen column sets."""
    keys = tuple(k for name in columns for k in EXTRA_COLUMNS[name])
    rng = np.random.default_rng(seed_sequence(seed, "extra:" + key)) if resamples else None
    return {k: mean_and_interval(v, resamples, rng) for k, v in sample_values(samples, keys, spreads).items()}


def answer_curve(samples: list[SampleStats], group: str, metric: str, resamples: int, seed: int, key: str) -> np.ndarray | None:
    """(bins, 3) mean, low, high of the per-sample bin values (NaN where undefined); None without binned records."""
    recorded = [s for s in samples if s.stepwise is not None]
    if not recorded:
        return None
    head = recorded[0].stepwise.head
    values = np.array([[np.nan if getattr(d, metric) is None else getattr(d, metric) for d in step_dominance(s, group)[head:]] for s in recorded])
    rng = np.random.default_rng(seed_sequence(seed, f"curve:{group}:{metric}:{key}")) if resamples else None
    out = []
    for column in values.T:
        mean, low, high, _ = mean_and_interval(column, resamples, rng)
        out.append([np.nan if v is None else v for v in (mean, low, high)])
    return np.array(out)


def text_part_shares(samples: list[SampleStats]) -> tuple[list[str], np.ndarray] | None:
    """(part names, (parts, layers) mean share of the prompt attention): each text sub-class, then
    each non-text class; None when no sample has text sub-classes. Shares of one layer sum to 1."""
    recorded = [s for s in samples if s.subclass_mass and s.rows]
    if not recorded:
        return None
    names = list(recorded[0].subclass_mass) + list(recorded[0].classes[1:])
    shares = []
    for s in recorded:
        if list(s.subclass_mass) + list(s.classes[1:]) != names:
            continue
        prompt = s.mass.sum(axis=1)
        parts = [s.subclass_mass[n] for n in s.subclass_mass] + [s.mass[:, c] for c in range(1, len(s.classes))]
        with np.errstate(invalid="ignore", divide="ignore"):
            shares.append(np.array(parts) / prompt)
    return names, np.nanmean(np.array(shares), axis=0)
