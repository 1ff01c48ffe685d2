"""Seeded percentile-bootstrap intervals for the MDI / AEI cells of the table.

The resampled unit is the sample: a replicate draws n of a run's n samples with replacement and
recomputes each cell's aggregate from them the way the table does (per-sample values from the
metric core, or for ``pooled`` the summed masses put back through ``metrics.dominance``). The
interval is the 2.5th to 97.5th percentile of the replicates. The generator is seeded from the
seed and the run's identity, so a run's interval stays the same whatever other runs are reported.
(Not scipy.stats.bootstrap: the pooled cell resamples summed masses, not a statistic of one array.)
"""

from __future__ import annotations

import hashlib
import warnings

import numpy as np

from lmms_textdom.core.metrics import GROUPS, METRICS, dominance, layer_groups, sample_dominance
from lmms_textdom.core.stats import SampleStats

CONFIDENCE = 0.95
#: Resample indices drawn per chunk (bounds memory on runs with many samples).
CHUNK_INDICES = 1_000_000


class Replicator:
    """Each MDI / AEI cell's aggregate, recomputed on resamples of one run's samples (vectorised)."""

    def __init__(self, samples: list[SampleStats], method: str):
        self.method = method
        groups = layer_groups(samples[0].num_layers)
        per_sample = {g: [sample_dominance(s, idx) for s in samples] for g, idx in groups.items()}
        if method == "pooled":
            # Per group and sample: what pooled_dominance sums (NaN where the sample is skipped).
            self.parts = {
                g: np.array([
                    (s.text_mass(idx), s.nontext_mass(idx), s.rows * s.text_count, s.rows * s.nontext_count)
                    if d.defined else (np.nan,) * 4
                    for s, d in zip(samples, per_sample[g])
                ])
                for g, idx in groups.items()
            }  # fmt: skip
        else:
            self.values = {
                f"{m}_{g}": np.array([np.nan if getattr(d, m) is None else getattr(d, m) for d in per_sample[g]])
                for m in METRICS
                for g in GROUPS
            }

    def replicates(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        """``{"mdi_early": values, ...}`` for resamples ``indices`` (replicates x n); NaN where undefined."""
        with warnings.catch_warnings(), np.errstate(divide="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)  # all-undefined resamples give NaN, as wanted
            if self.method == "pooled":
                return self._pooled(indices)
            reduce = {
                "mean": lambda v: np.nanmean(v, axis=1),
                "geomean": lambda v: np.exp(np.nanmean(np.log(v), axis=1)),  # a 0 makes it 0, like metrics.aggregate
                "median": lambda v: np.nanmedian(v, axis=1),
            }[self.method]
            return {cell: reduce(values[indices]) for cell, values in self.values.items()}

    def _pooled(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        out = {}
        for g, parts in self.parts.items():
            drawn = parts[indices]  # replicates x n x 4
            used = (~np.isnan(drawn[..., 0])).sum(axis=1)
            sums = np.nansum(drawn, axis=1)
            units = [dominance(*row) if k else None for row, k in zip(sums, used)]
            for m in METRICS:
                out[f"{m}_{g}"] = np.array([np.nan if u is None or getattr(u, m) is None else getattr(u, m) for u in units])
        return out


def seed_sequence(seed: int, key: str) -> np.random.SeedSequence:
    digest = hashlib.sha256(key.encode()).digest()
    return np.random.SeedSequence([seed, *(int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4))])


def intervals(samples: list[SampleStats], method: str, resamples: int, seed: int, key: str) -> dict[str, tuple[float, float]]:
    """``{"mdi_early": (low, high), ...}`` for the cells with any defined replicate; {} without resamples."""
    if resamples <= 0 or not samples:
        return {}
    n = len(samples)
    rng = np.random.default_rng(seed_sequence(seed, key))
    replicator = Replicator(samples, method)
    chunk = max(1, CHUNK_INDICES // n)
    drawn: dict[str, list[np.ndarray]] = {}
    for start in range(0, resamples, chunk):
        indices = rng.integers(0, n, size=(min(chunk, resamples - start), n))
        for cell, values in replicator.replicates(indices).items():
            drawn.setdefault(cell, []).append(values)
    tail = 100 * (1 - CONFIDENCE) / 2
    out = {}
    for cell, parts in drawn.items():
        values = np.concatenate(parts)
        values = values[~np.isnan(values)]
        if values.size:
            low, high = np.percentile(values, [tail, 100 - tail])
            out[cell] = (float(low), float(high))
    return out
