"""Key-space divergence between position classes, from the key samples in the sample logs (numpy only).

Estimator: Jensen-Shannon divergence (base 2, so in [0, 1] bits) between histograms of the keys'
coordinates on the shared principal directions (``key_sampler``), one direction at a time, on
equal-mass bins of the two samples pooled (about sqrt(n) bins for n points per side); the value
of a pair of classes is the largest over the directions. Why this one: it needs no Gaussian
assumption (keys after the rotary embedding are not Gaussian), it is bounded, and a projection
never adds divergence (data processing), so the value is a lower bound on the JS divergence of
the full key distributions, tight when the classes differ along one principal direction. Finite
samples bias any histogram estimate upwards; the baseline therefore uses the same sizes:

- within a class: JS between its two random halves;
- text vs a non-text class: the mean of JS(text half A, class half B) and JS(text half B, class half A).

The histogram JS is a few numpy lines: scipy's ``jensenshannon`` returns the distance (its square
root) of given histograms, and the equal-mass binning is the part that matters here.
"""

from __future__ import annotations

import math
from typing import Iterable, Mapping

import numpy as np

TEXT = "text"
#: fewest points per half for a value (fewer: None)
MIN_HALF = 2


def default_bins(n: int) -> int:
    return max(2, int(round(math.sqrt(n))))


def js_divergence(a: np.ndarray, b: np.ndarray, bins: int | None = None) -> float:
    """JS divergence in bits between two 1-D samples, on ``bins`` equal-mass bins of the pooled sample."""
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if not len(a) or not len(b):
        raise ValueError("js_divergence needs two non-empty samples")
    bins = bins or default_bins(min(len(a), len(b)))
    pooled = np.concatenate([a, b])
    inner = np.quantile(pooled, np.linspace(0, 1, bins + 1)[1:-1])
    p = np.bincount(np.searchsorted(inner, a, side="right"), minlength=bins) / len(a)
    q = np.bincount(np.searchsorted(inner, b, side="right"), minlength=bins) / len(b)
    m = (p + q) / 2

    def kl(x: np.ndarray) -> float:
        seen = x > 0
        return float(np.sum(x[seen] * np.log2(x[seen] / m[seen])))

    return max(0.0, 0.5 * kl(p) + 0.5 * kl(q))


def projected_js(a: np.ndarray, b: np.ndarray) -> float:
    """Largest per-direction JS divergence between two (n, k) coordinate samples."""
    a, b = np.atleast_2d(a), np.atleast_2d(b)
    return max(js_divergence(a[:, j], b[:, j]) for j in range(a.shape[1]))


def halves(points: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The two halves of a sample stored in random order; None when a half would be too small."""
    half = len(points) // 2
    return (points[:half], points[half : 2 * half]) if half >= MIN_HALF else None


def layer_divergences(coords: Mapping[str, Iterable]) -> dict[str, float | None]:
    """One layer of one sample: ``within:<class>`` for every class and ``text~<class>`` for every non-text class."""
    split = {name: halves(np.asarray(points, dtype=np.float64).reshape(len(points), -1)) for name, points in coords.items()}
    out: dict[str, float | None] = {f"within:{name}": None if h is None else projected_js(*h) for name, h in split.items()}
    text = split.get(TEXT)
    for name, other in split.items():
        if name == TEXT:
            continue
        both = text is not None and other is not None
        out[f"{TEXT}~{name}"] = (projected_js(text[0], other[1]) + projected_js(text[1], other[0])) / 2 if both else None
    return out


def sample_divergences(key_stats: Mapping) -> list[dict[str, float | None]]:
    """Per layer of one sample's ``key_stats`` record."""
    return [layer_divergences(layer["coords"]) for layer in key_stats["layers"]]


class LayerMeans:
    """Running per-layer means over samples of every divergence name (undefined values skipped)."""

    def __init__(self):
        self.sums: dict[tuple[int, str], list[float]] = {}

    def add(self, per_layer: list[dict[str, float | None]]) -> None:
        for layer, values in enumerate(per_layer):
            for name, value in values.items():
                if value is not None:
                    self.sums.setdefault((layer, name), []).append(value)

    @property
    def num_layers(self) -> int:
        return 1 + max((layer for layer, _ in self.sums), default=-1)

    def names(self) -> list[str]:
        """Cross-class names first, then the within-class baselines (text first)."""
        found = {name for _, name in self.sums}
        cross = sorted(n for n in found if "~" in n)
        within = sorted((n for n in found if n.startswith("within:")), key=lambda n: (n != f"within:{TEXT}", n))
        return cross + within

    def mean(self, layer: int, name: str) -> float | None:
        values = self.sums.get((layer, name))
        return math.fsum(values) / len(values) if values else None

    def count(self, layer: int, name: str) -> int:
        return len(self.sums.get((layer, name), ()))
