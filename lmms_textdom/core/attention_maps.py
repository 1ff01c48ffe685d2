"""Where the answer looked: per-position attention maps of one sample, and their spread (numpy only).

For each layer group (``metrics.layer_groups``) and non-text class, the map holds one number per
position of that class, in sequence order: the attention that position received from the rows that
produced the answer, summed over those rows, the heads and the group's layers. These are the sums
that make ``SampleStats.mass``, so for every class and group

    sum(map[group][class]) == sum(stats.mass[layers of group, class])

**Pooling.** A class whose positions would need more than ``LIMIT`` values is stored pooled: each
part (an item such as one image or one video frame, or a run of the class's positions) is cut
into bins of ``pool`` neighbouring positions (the last bin of a part may be shorter) and a bin
stores the sum of its positions, so the identity above still holds. ``pool`` is 1 when nothing is
pooled.

**Spread** of a group (all non-text classes together, as stored): with values m_i (positions, or
bins when pooled), N of them and M = sum m_i,

- ``entropy``: -sum p_i ln p_i over p_i = m_i / M > 0, in nats;
- ``entropy_normalized``: entropy / ln N (1 = attention spread evenly, 0 = on one value); N >= 2;
- ``top10_share``: the sum of the ceil(N / 10) largest m_i, divided by M.

Each is None where it is undefined (no non-text value, M = 0, or N < 2 for the normalized entropy).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

#: record format of ``textdom.attention_maps``
FORMAT = 1
#: most stored values per class and layer group before neighbouring positions are pooled
LIMIT = 4096
#: the answer's first and last quarter (``attention_maps=steps``)
QUARTERS = ("first", "last")
SPREAD_KEYS = ("entropy", "entropy_normalized", "top10_share")


def bins_per_part(parts: Sequence[int], pool: int) -> list[int]:
    return [math.ceil(int(s) / pool) for s in parts]


def choose_pool(parts: Sequence[int], limit: int = LIMIT) -> int:
    """The smallest number of neighbouring positions per stored value that keeps a class within ``limit`` values."""
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    total = sum(int(s) for s in parts)
    if total <= limit:
        return 1
    pool = max(1, math.ceil(total / limit))
    while sum(bins_per_part(parts, pool)) > limit:  # each part's last bin may be partial
        pool += 1
    return pool


def bin_of_positions(parts: Sequence[int], pool: int) -> np.ndarray:
    """For the class's positions in sequence order, the index of the stored value each one falls in."""
    out, first = [], 0
    for size, bins in zip(parts, bins_per_part(parts, pool)):
        out.append(first + np.arange(int(size)) // pool)
        first += bins
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


@dataclass(frozen=True)
class Spread:
    entropy: float | None
    entropy_normalized: float | None
    top10_share: float | None

    def to_dict(self) -> dict[str, float | None]:
        return {k: getattr(self, k) for k in SPREAD_KEYS}


NO_SPREAD = Spread(None, None, None)


def spread(values: np.ndarray) -> Spread:
    """The spread numbers (module docstring) of one group's non-text values."""
    m = np.asarray(values, dtype=np.float64)
    total = float(m.sum())
    if m.size == 0 or not total > 0:
        return NO_SPREAD
    p = m[m > 0] / total
    entropy = float(-(p * np.log(p)).sum())
    top = math.ceil(m.size / 10)
    share = float(np.sort(m)[::-1][:top].sum() / total)
    normalized = entropy / math.log(m.size) if m.size >= 2 else None
    # + 0.0: a one-value map gives -0.0 in floating point
    return Spread(max(entropy, 0.0) + 0.0, None if normalized is None else max(normalized, 0.0) + 0.0, min(share, 1.0))


def _float32_list(values: np.ndarray) -> list[float]:
    # the shortest text that reads back as the same float32: exact, and about half the size of float64 text
    return [float(str(v)) for v in np.asarray(values, dtype=np.float32)]


def _maps_to_dict(groups: Mapping[str, Mapping[str, np.ndarray]]) -> dict:
    return {g: {c: _float32_list(v) for c, v in by_class.items()} for g, by_class in groups.items()}


def _maps_from_dict(data: Mapping[str, Mapping[str, Sequence[float]]]) -> dict:
    return {g: {c: np.asarray(v, dtype=np.float32) for c, v in by_class.items()} for g, by_class in data.items()}


@dataclass(frozen=True, eq=False)
class AttentionMaps:
    """One sample's maps (module docstring).

    parts[c]  positions of each part of class c, in sequence order (they sum to the class's positions)
    pool[c]      neighbouring positions summed per stored value of class c (1 = one value per position)
    layers[g]    the layers of group g
    rows         output rows summed
    groups[g][c] float32 values of class c in group g, ``sum(ceil(part / pool))`` of them
    quarters     ``attention_maps=steps``: {"first" | "last": {"rows": r, "groups": like ``groups``}}
    items        where each item's positions are (the adapter's placement records), in sequence order
    """

    parts: Mapping[str, Sequence[int]]
    pool: Mapping[str, int]
    layers: Mapping[str, Sequence[int]]
    rows: int
    groups: Mapping[str, Mapping[str, np.ndarray]]
    quarters: Mapping[str, Mapping[str, Any]] | None = None
    items: Sequence[Mapping[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        for group, by_class in self.groups.items():
            if set(by_class) != set(self.parts):
                raise ValueError(f"group {group!r} maps classes {sorted(by_class)}, the parts name {sorted(self.parts)}")
            for name, values in by_class.items():
                expected = sum(bins_per_part(self.parts[name], self.pool[name]))
                if np.asarray(values).shape != (expected,):
                    raise ValueError(f"{group}/{name}: {np.asarray(values).shape[0]} values where its parts and pool give {expected}")

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.parts)

    def positions(self, name: str) -> int:
        return sum(int(s) for s in self.parts[name])

    def class_sums(self, group: str) -> dict[str, float]:
        return {c: float(np.asarray(v, dtype=np.float64).sum()) for c, v in self.groups[group].items()}

    def nontext_values(self, group: str, groups: Mapping[str, Mapping[str, np.ndarray]] | None = None) -> np.ndarray:
        by_class = (groups or self.groups)[group]
        parts = [np.asarray(by_class[c], dtype=np.float64) for c in self.classes]
        return np.concatenate(parts) if parts else np.zeros(0)

    def spread(self, group: str) -> Spread:
        return spread(self.nontext_values(group))

    def to_dict(self) -> dict[str, Any]:
        out = {
            "format": FORMAT,
            "rows": int(self.rows),
            "layers": {g: list(map(int, idx)) for g, idx in self.layers.items()},
            "positions": {c: self.positions(c) for c in self.classes},
            "pool": {c: int(self.pool[c]) for c in self.classes},
            "parts": {c: list(map(int, self.parts[c])) for c in self.classes},
            "groups": _maps_to_dict(self.groups),
        }
        if self.quarters is not None:
            out["quarters"] = {q: {"rows": int(part["rows"]), "groups": _maps_to_dict(part["groups"])} for q, part in self.quarters.items()}
        if self.items:
            out["items"] = list(self.items)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "AttentionMaps":
        if data.get("format") != FORMAT:
            raise ValueError(f"attention maps of format {data.get('format')!r}; this version reads format {FORMAT}")
        quarters = data.get("quarters")
        return cls(
            parts={c: list(s) for c, s in data["parts"].items()},
            pool=dict(data["pool"]),
            layers={g: tuple(idx) for g, idx in data["layers"].items()},
            rows=int(data["rows"]),
            groups=_maps_from_dict(data["groups"]),
            quarters=None if quarters is None else {q: {"rows": p["rows"], "groups": _maps_from_dict(p["groups"])} for q, p in quarters.items()},
            items=list(data.get("items", [])),
        )


def spread_values(record: Mapping[str, Any]) -> dict[str, dict[str, float | None]]:
    """``{group: {"entropy": ..., "entropy_normalized": ..., "top10_share": ...}}`` of a stored record."""
    maps = AttentionMaps.from_dict(record)
    return {g: maps.spread(g).to_dict() for g in maps.groups}
