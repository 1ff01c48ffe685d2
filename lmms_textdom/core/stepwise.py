"""Attention along the answer: per-row masses binned over relative position (numpy only).

A sample's n output rows (row i produced output token i) are kept in ``HEAD + BINS`` slots:

- slots 0 .. HEAD-1: the first HEAD rows exactly, one row each (empty when n is shorter);
- slots HEAD .. HEAD+BINS-1: every row i in relative bin ``b = (i * BINS) // n`` (so the BINS
  bins partition all n rows, the first rows included; a bin holds floor or ceil of n / BINS rows,
  and bins are empty when n < BINS).

Per paper layer group (``metrics.layer_groups``) and slot, each column holds the slot's rows'
attention summed over the group's layers, the heads and the rows: the position classes, then the
generated tokens, then the text sub-classes (the probe's columns, in that order). With 3 groups,
20 slots and ~8 columns a record holds ~500 numbers, whatever the answer length and the depth.

MDI/AEI of a slot are the paper's formulas on that slot's masses with the sample's position counts
(the counts are those of the prompt, the same for every row). ``decay`` compares the last quarter
of the answer with the first: MDI over the rows of bins BINS*3/4 .. BINS-1 divided by MDI over
bins 0 .. BINS/4-1; undefined (None) when either quarter holds no row (answers under 4 tokens).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

#: Equal bins of relative position in the answer.
BINS = 16
#: Leading rows also kept exactly, one slot each.
HEAD = 4
GENERATED = "generated"


def slot_rows(n: int, bins: int = BINS, head: int = HEAD) -> list[np.ndarray]:
    """Row indices of each slot (``head`` exact rows, then ``bins`` relative bins) of an n-row answer."""
    rows = np.arange(n)
    heads = [rows[i : i + 1] if i < n else rows[:0] for i in range(head)]
    which = (rows * bins) // max(n, 1)
    return heads + [rows[which == b] for b in range(bins)]


@dataclass(frozen=True, eq=False)
class StepMasses:
    """Binned per-row masses of one sample (see the module docstring).

    groups    layer group name -> the layers summed in it
    columns   classes, ``generated``, then text sub-classes
    rows[s]   output rows in slot s
    mass[g, s, c]  summed attention of slot s's rows onto column c in group g
    """

    groups: Mapping[str, tuple[int, ...]]
    columns: tuple[str, ...]
    rows: np.ndarray
    mass: np.ndarray
    bins: int = BINS
    head: int = HEAD

    def __post_init__(self) -> None:
        rows = np.asarray(self.rows, dtype=np.int64)
        mass = np.asarray(self.mass, dtype=np.float64)
        slots = self.head + self.bins
        shape = (len(self.groups), slots, len(self.columns))
        if rows.shape != (slots,) or np.any(rows < 0):
            raise ValueError(f"stepwise rows must be {slots} non-negative counts, got {rows.tolist()}")
        if mass.shape != shape or not np.all(np.isfinite(mass)) or np.any(mass < 0):
            raise ValueError(f"stepwise mass must be finite, non-negative, of shape {shape}, got {mass.shape}")
        object.__setattr__(self, "groups", {g: tuple(int(i) for i in idx) for g, idx in self.groups.items()})
        object.__setattr__(self, "columns", tuple(self.columns))
        object.__setattr__(self, "rows", rows)
        object.__setattr__(self, "mass", mass)

    @classmethod
    def from_rows(
        cls, per_row: np.ndarray, groups: Mapping[str, Sequence[int]], columns: Sequence[str], bins: int = BINS, head: int = HEAD
    ) -> "StepMasses":
        """Bin ``per_row`` (rows, layers, columns): one sample's per-row, per-layer column sums."""
        per_row = np.asarray(per_row, dtype=np.float64)
        by_group = np.stack([per_row[:, list(idx), :].sum(axis=1) for idx in groups.values()])  # (G, n, C)
        slots = slot_rows(per_row.shape[0], bins, head)
        mass = np.stack([by_group[:, idx, :].sum(axis=1) for idx in slots], axis=1)
        return cls(groups, tuple(columns), np.array([len(idx) for idx in slots]), mass, bins, head)

    def column(self, name: str) -> int:
        return self.columns.index(name)

    def to_dict(self) -> dict[str, Any]:
        # 7 significant digits: the probe computes in float32, and this keeps the log line small
        return {
            "bins": self.bins,
            "head": self.head,
            "groups": {g: list(idx) for g, idx in self.groups.items()},
            "columns": list(self.columns),
            "rows": self.rows.tolist(),
            "mass": [[[float(f"{v:.7g}") for v in slot] for slot in group] for group in self.mass],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "StepMasses":
        return cls(data["groups"], tuple(data["columns"]), data["rows"], data["mass"], data["bins"], data["head"])
