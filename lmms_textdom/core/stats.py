"""The per-sample record of where generated tokens put their attention.

numpy only: this is the hand-over format between the probe (which fills it), the metrics (which
read it) and the sample logs (which store it as JSON), so every later tool can recompute every figure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

TEXT = "text"
#: Position classes the tool knows. "text" is every prompt position that is not one of the others.
MODALITIES = (TEXT, "image", "video", "audio", "time_series", "graph")
#: A text sub-class ``text:<name>`` (e.g. ``text:graph_marker``) is text for every metric, but its
#: positions and masses are kept apart in the record, so a view can recompute figures either way.
TEXT_SUBCLASS_PREFIX = TEXT + ":"


def is_text_class(name: str) -> bool:
    return name == TEXT or (name.startswith(TEXT_SUBCLASS_PREFIX) and name[len(TEXT_SUBCLASS_PREFIX) :].isidentifier())


def check_classes(classes: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Validate a class list: known names or text sub-classes, no repeats, "text" first."""
    classes = tuple(classes)
    unknown = [c for c in classes if c not in MODALITIES and not is_text_class(c)]
    if unknown:
        raise ValueError(
            f"unknown position class {unknown[0]!r}; known classes: {', '.join(MODALITIES)} and text sub-classes "
            f"{TEXT_SUBCLASS_PREFIX}<name>"
        )
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
    """

    classes: tuple[str, ...]
    counts: tuple[int, ...]
    mass: np.ndarray
    generated: np.ndarray
    rows: int
    heads: int

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

    @property
    def num_layers(self) -> int:
        return self.mass.shape[0]

    @property
    def text_columns(self) -> list[int]:
        """Columns of "text" and its sub-classes; every other column is non-text."""
        return [i for i, c in enumerate(self.classes) if is_text_class(c)]

    @property
    def nontext_columns(self) -> list[int]:
        return [i for i, c in enumerate(self.classes) if not is_text_class(c)]

    @property
    def text_count(self) -> int:
        return sum(self.counts[i] for i in self.text_columns)

    @property
    def nontext_count(self) -> int:
        return sum(self.counts[i] for i in self.nontext_columns)

    def text_mass(self, layers=slice(None)) -> float:
        return float(self.mass[layers, :][..., self.text_columns].sum())

    def nontext_mass(self, layers=slice(None)) -> float:
        return float(self.mass[layers, :][..., self.nontext_columns].sum())

    def to_dict(self) -> dict[str, Any]:
        return {
            "classes": list(self.classes),
            "counts": list(self.counts),
            "rows": self.rows,
            "heads": self.heads,
            "mass": self.mass.tolist(),
            "generated": self.generated.tolist(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SampleStats":
        return cls(
            classes=tuple(data["classes"]),
            counts=tuple(data["counts"]),
            mass=np.asarray(data["mass"], dtype=np.float64).reshape(-1, len(data["classes"])),
            generated=np.asarray(data["generated"], dtype=np.float64),
            rows=data["rows"],
            heads=data["heads"],
        )
