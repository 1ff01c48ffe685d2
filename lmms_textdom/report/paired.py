"""Paired statistics of two runs on the same samples (numpy and the standard library only).

- ``mcnemar_exact``: the exact McNemar test of two correct/wrong columns: only discordant pairs
  count, b (right only in the first) and c (right only in the second); under the null each is a fair
  coin, so p = min(1, 2 * P[Binomial(b + c, 1/2) <= min(b, c)]), and 1 without discordant pairs.
- ``paired_bootstrap``: the mean of (second - first) over the pairs, and the percentile interval of
  that mean over resamples of the pairs (a replicate draws n of the n pairs with replacement).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from lmms_textdom.report.bootstrap import CHUNK_INDICES, CONFIDENCE, seed_sequence


def mcnemar_exact(first: Sequence[float], second: Sequence[float]) -> float:
    """Two-sided exact McNemar p-value of paired 0/1 outcomes (ValueError for other values)."""
    a, b = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
    if a.shape != b.shape:
        raise ValueError("paired outcomes must have the same length")
    if not np.isin(a, (0.0, 1.0)).all() or not np.isin(b, (0.0, 1.0)).all():
        raise ValueError("McNemar's test needs 0/1 outcomes")
    only_first, only_second = int(((a == 1) & (b == 0)).sum()), int(((a == 0) & (b == 1)).sum())
    n = only_first + only_second
    if n == 0:
        return 1.0
    k = min(only_first, only_second)
    tail = math.fsum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


@dataclass(frozen=True)
class PairedDifference:
    mean: float  # mean of second - first
    low: float | None  # percentile interval of the mean (None without resamples)
    high: float | None
    pairs: int


def paired_bootstrap(first: Sequence[float], second: Sequence[float], resamples: int, seed: int, key: str = "") -> PairedDifference | None:
    """Mean paired difference second - first and its bootstrap interval; None without pairs."""
    diff = np.asarray(second, dtype=float) - np.asarray(first, dtype=float)
    if diff.size == 0:
        return None
    mean = float(diff.mean())
    if resamples <= 0:
        return PairedDifference(mean, None, None, diff.size)
    rng = np.random.default_rng(seed_sequence(seed, key))
    chunk = max(1, CHUNK_INDICES // diff.size)
    parts = []
    for start in range(0, resamples, chunk):
        drawn = rng.integers(0, diff.size, size=(min(chunk, resamples - start), diff.size))
        parts.append(diff[drawn].mean(axis=1))
    means = np.concatenate(parts)
    tail = 100 * (1 - CONFIDENCE) / 2
    low, high = np.percentile(means, [tail, 100 - tail])
    return PairedDifference(mean, float(low), float(high), diff.size)
