"""The per-sample record of where generated tokens put their attention.

numpy only: this is the hand-over format between the probe (which fills it), the metrics (which
read it) and the sample logs (which store it as JSON), so every later tool can recompute every figure.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from lmms_textdom.core.stepwise import StepMasses

if TYPE_CHECKING:
    from lmms_textdom.core.segments import Segments

TEXT = "text"
#: Position classes the tool knows. "text" is every prompt position that is not one of the others.
MODALITIES = (TEXT, "image", "video", "audio", "time_series", "graph")


def check_classes(classes: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Validate a class list: known names, no repeats, "text" first."""
    classes = tuple(classes)
    unknown = [c for c in classes if c not in MODALITIES]
    if unknown:
        raise ValueError(f"unknown position class {unknown[0]!r}; known classes: {', '.join(MODALITIES)}")
    if len(set(classes)) != len(classes):
        raise ValueError(f"position classes must not repeat, got {list(classes)}")
    if not classes or classes[0] != TEXT:
        raise ValueError(f"the first position class must be {TEXT!r}, got {list(classes)}")
    return classes


@dataclass(frozen=True, eq=False)
class SampleStats:
    """Attention of one sample's output rows, reduced to per-layer sums per class of input position.

    mass[l, c]    attention from the rows that produced output tokens, onto prompt positions of class
                  ``classes[c]`` in language-model layer l, summed over those rows and over heads.
    generated[l]  the same rows' attention onto earlier *generated* tokens (kept apart; the metrics drop it).
    counts[c]     number of prompt positions of class ``classes[c]`` (padding excluded).
    rows          number of output rows measured (= output tokens).
    heads         attention heads summed per row, so one row carries ``heads`` units of mass.
    subclass_counts[name], subclass_mass[name][l]
                  optional named subsets of the text positions (e.g. numbers written as text), with
                  their position count and per-layer mass. Their mass is already part of the text
                  column; they are kept apart for views beyond the headline metrics, which ignore them.
    stepwise      optional: the same rows' masses binned over the answer per layer group
                  (``core/stepwise.py``); None when the probe did not keep them.
    segments      optional: a thinking model's answer split into its thinking and answer rows
                  (``core/segments.py``); None when the answer holds no thinking marker.
    """

    classes: tuple[str, ...]
    counts: tuple[int, ...]
    mass: np.ndarray
    generated: np.ndarray
    rows: int
    heads: int
    subclass_counts: Mapping[str, int] = field(default_factory=dict)
    subclass_mass: Mapping[str, np.ndarray] = field(default_factory=dict)
    stepwise: StepMasses | None = None
    segments: Segments | None = None

    def __post_init__(self) -> None:
        classes = check_classes(self.classes)
        mass = np.asarray(self.mass, dtype=np.float64)
        generated = np.asarray(self.generated, dtype=np.float64)
        if mass.ndim != 2 or mass.shape[1] != len(classes):
            raise ValueError(f"mass must have shape (layers, {len(classes)}), got {mass.shape}")
        if generated.shape != (mass.shape[0],):
            raise ValueError(f"generated must have shape ({mass.shape[0]},), got {generated.shape}")
        if len(self.counts) != len(classes) or any(int(n) < 0 for n in self.counts):
            raise ValueError(f"counts must be {len(classes)} non-negative integers, got {list(self.counts)}")
        for name, values in (("mass", mass), ("generated", generated)):
            if not np.all(np.isfinite(values)) or np.any(values < 0):
                raise ValueError(f"{name} must be finite and non-negative")
        if int(self.rows) < 0 or int(self.heads) < 1:
            raise ValueError(f"rows must be >= 0 and heads >= 1, got rows={self.rows}, heads={self.heads}")
        object.__setattr__(self, "classes", classes)
        object.__setattr__(self, "counts", tuple(int(n) for n in self.counts))
        object.__setattr__(self, "mass", mass)
        object.__setattr__(self, "generated", generated)
        object.__setattr__(self, "rows", int(self.rows))
        object.__setattr__(self, "heads", int(self.heads))
        self._check_subclasses(mass)
        if self.stepwise is not None:
            expected = (*classes, "generated", *self.subclass_mass)
            if self.stepwise.columns != expected or int(self.stepwise.rows[self.stepwise.head :].sum()) != self.rows:
                raise ValueError(f"stepwise masses must have columns {list(expected)} and bin all {self.rows} rows")
        if self.segments is not None:
            self.segments.check_against(self)

    def _check_subclasses(self, mass: np.ndarray) -> None:
        if set(self.subclass_counts) != set(self.subclass_mass):
            raise ValueError(f"subclass counts {sorted(self.subclass_counts)} and masses {sorted(self.subclass_mass)} must name the same subclasses")
        counts, masses = {}, {}
        for name, values in self.subclass_mass.items():
            values = np.asarray(values, dtype=np.float64)
            if values.shape != (mass.shape[0],) or not np.all(np.isfinite(values)) or np.any(values < 0):
                raise ValueError(f"subclass {name!r} mass must be {mass.shape[0]} finite non-negative values")
            if np.any(values > mass[:, 0] * (1 + 1e-6) + 1e-9):
                raise ValueError(f"subclass {name!r} is a part of the text, so its mass cannot exceed the text mass")
            count = int(self.subclass_counts[name])
            if not 0 <= count <= self.counts[0]:
                raise ValueError(f"subclass {name!r} count {count} must lie in [0, {self.counts[0]}] (the text positions)")
            counts[name], masses[name] = count, values
        object.__setattr__(self, "subclass_counts", counts)
        object.__setattr__(self, "subclass_mass", masses)

    @property
    def num_layers(self) -> int:
        return self.mass.shape[0]

    @property
    def text_count(self) -> int:
        return self.counts[0]

    @property
    def nontext_count(self) -> int:
        return sum(self.counts[1:])

    def text_mass(self, layers=slice(None)) -> float:
        return float(self.mass[layers, 0].sum())

    def nontext_mass(self, layers=slice(None)) -> float:
        return float(self.mass[layers, 1:].sum())

    def to_dict(self) -> dict[str, Any]:
        out = {
            "classes": list(self.classes),
            "counts": list(self.counts),
            "rows": self.rows,
            "heads": self.heads,
            "mass": self.mass.tolist(),
            "generated": self.generated.tolist(),
        }
        if self.subclass_mass:  # absent when there are none, so records without them stay as they were
            out["subclasses"] = {
                name: {"of": TEXT, "count": self.subclass_counts[name], "mass": self.subclass_mass[name].tolist()}
                for name in self.subclass_mass
            }
        if self.stepwise is not None:
            out["stepwise"] = self.stepwise.to_dict()
        if self.segments is not None:
            out["segments"] = self.segments.to_dict()
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SampleStats":
        stats = cls(
            classes=tuple(data["classes"]),
            counts=tuple(data["counts"]),
            mass=np.asarray(data["mass"], dtype=np.float64).reshape(-1, len(data["classes"])),
            generated=np.asarray(data["generated"], dtype=np.float64),
            rows=data["rows"],
            heads=data["heads"],
            subclass_counts={name: sub["count"] for name, sub in data.get("subclasses", {}).items()},
            subclass_mass={name: sub["mass"] for name, sub in data.get("subclasses", {}).items()},
            stepwise=StepMasses.from_dict(data["stepwise"]) if "stepwise" in data else None,
        )
        if data.get("segments") is None:
            return stats
        from lmms_textdom.core.segments import Segments  # it builds on this module

        return replace(stats, segments=Segments.from_dict(data["segments"], stats))
