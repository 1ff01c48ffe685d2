"""Thinking and answering: a reasoning model's answer split at its thinking markers (numpy only).

Thinking checkpoints write their reasoning between two markers before they answer
(Kimi-VL-A3B-Thinking ``◁think▷ ... ◁/think▷``, Qwen-style ``<think> ... </think>``). Row i of a
sample produced output token i, so the rows split by the tokens they produced:

- ``thinking``: the rows that produced the tokens after the opening marker and before the closing one;
- ``answer``: the rows that produced the tokens after the closing marker, up to and including the
  token that ended the answer (its EOS), as the whole answer counts it;
- the rows that produced a marker's own tokens are in neither segment.

An answer whose closing marker has no opening marker before it (the chat template put the opening
one into the prompt, or the model skips it as DeepSeek-R1 does) thinks from its first row. An answer
with an opening marker but no closing one (or whose prompt opened the thinking) is all thinking: it
is ``truncated`` and has no answer segment. An answer without any marker has no segments at all
(``SampleStats.segments`` is None, never zeros).

Each segment is a ``SampleStats`` of its own rows, with the whole sample's position classes, counts
and heads, and its own per-step bins (``core/stepwise.py``: the thinking segment's bins run along the
chain). So every metric and view applies to a segment unchanged, and its masses are exactly the
whole answer's per-row masses summed over the segment's rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from lmms_textdom.core.metrics import GROUPS, METRICS, layer_groups, sample_dominance
from lmms_textdom.core.stats import SampleStats
from lmms_textdom.core.stepwise import GENERATED, StepMasses

THINKING, ANSWER = "thinking", "answer"
SEGMENTS = (THINKING, ANSWER)


@dataclass(frozen=True)
class SegmentRows:
    """Where an answer of ``rows`` rows splits: each segment a half-open row range [start, end).

    answer is None when the thinking never closed (truncated).
    """

    markers: tuple[str, str]
    rows: int
    thinking: tuple[int, int]
    answer: tuple[int, int] | None

    def __post_init__(self) -> None:
        spans = [self.thinking] + ([self.answer] if self.answer is not None else [])
        if any(not 0 <= start <= end <= self.rows for start, end in spans):
            raise ValueError(f"segment rows {spans} must lie within the answer's {self.rows} rows")
        if self.answer is not None and self.answer[0] < self.thinking[1]:
            raise ValueError(f"the answer segment {self.answer} must follow the thinking segment {self.thinking}")

    @property
    def truncated(self) -> bool:
        return self.answer is None


def split_rows(
    rows: int,
    markers: tuple[str, str],
    opening: tuple[int, int] | None,
    closing: tuple[int, int] | None,
    opened_by_prompt: bool = False,
) -> SegmentRows | None:
    """The segments of an answer of ``rows`` tokens from its markers' token spans [first, end)
    (None where a marker is absent; ``opening`` only counts before ``closing``); see the module docstring."""
    if opening is not None and closing is not None and opening[0] >= closing[0]:
        opening = None  # an opening marker after the closing one opens nothing we measure
    if closing is not None:
        start = opening[1] if opening is not None else 0
        return SegmentRows(tuple(markers), rows, (start, closing[0]), (closing[1], rows))
    if opening is not None:
        return SegmentRows(tuple(markers), rows, (opening[1], rows), None)
    if opened_by_prompt:
        return SegmentRows(tuple(markers), rows, (0, rows), None)
    return None


def _part(whole: SampleStats, per_row: np.ndarray, start: int, end: int) -> SampleStats:
    """``whole`` restricted to rows start .. end - 1 of ``per_row`` (rows, layers, classes + 1 + sub-classes)."""
    k = len(whole.classes)
    part = per_row[start:end]
    summed = part.sum(axis=0) if len(part) else np.zeros(per_row.shape[1:])
    columns = (*whole.classes, GENERATED, *whole.subclass_mass)
    return SampleStats(
        classes=whole.classes,
        counts=whole.counts,
        mass=summed[:, :k],
        generated=summed[:, k],
        rows=end - start,
        heads=whole.heads,
        subclass_counts=whole.subclass_counts,
        subclass_mass={name: summed[:, k + 1 + j] for j, name in enumerate(whole.subclass_mass)},
        stepwise=StepMasses.from_rows(part, layer_groups(whole.num_layers), columns),
    )


@dataclass(frozen=True, eq=False)
class Segments:
    """The thinking and answer segments of one sample (``answer`` None when truncated)."""

    where: SegmentRows
    thinking: SampleStats
    answer: SampleStats | None

    def __post_init__(self) -> None:
        if self.thinking.rows != self.where.thinking[1] - self.where.thinking[0]:
            raise ValueError(f"the thinking segment holds {self.thinking.rows} rows, its span {self.where.thinking} says otherwise")
        if (self.answer is None) != self.where.truncated:
            raise ValueError("an answer segment exists exactly when the thinking closed")
        if self.answer is not None and self.answer.rows != self.where.answer[1] - self.where.answer[0]:
            raise ValueError(f"the answer segment holds {self.answer.rows} rows, its span {self.where.answer} says otherwise")

    @property
    def truncated(self) -> bool:
        return self.where.truncated

    @property
    def markers(self) -> tuple[str, str]:
        return self.where.markers

    @classmethod
    def from_rows(cls, whole: SampleStats, per_row: np.ndarray, where: SegmentRows) -> "Segments":
        """The segments of ``whole`` from its per-row masses (rows, layers, classes + 1 + sub-classes)."""
        if per_row.shape[0] != whole.rows or where.rows != whole.rows:
            raise ValueError(f"{per_row.shape[0]} per-row records and a split of {where.rows} rows for a sample of {whole.rows}")
        answer = None if where.answer is None else _part(whole, per_row, *where.answer)
        return cls(where, _part(whole, per_row, *where.thinking), answer)

    def check_against(self, whole: SampleStats) -> None:
        """Raise unless the segments belong to ``whole`` (same classes, counts and heads, rows within)."""
        for part in (self.thinking, self.answer):
            if part is not None and (part.classes, part.counts, part.heads) != (whole.classes, whole.counts, whole.heads):
                raise ValueError("a segment must have the classes, counts and heads of its sample")
        if self.where.rows != whole.rows:
            raise ValueError(f"segments split {self.where.rows} rows, the sample has {whole.rows}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "markers": list(self.markers),
            "thinking_rows": list(self.where.thinking),
            "answer_rows": None if self.where.answer is None else list(self.where.answer),
            "truncated": self.truncated,
            THINKING: _part_dict(self.thinking),
            ANSWER: None if self.answer is None else _part_dict(self.answer),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], whole: SampleStats) -> "Segments":
        answer_rows = data["answer_rows"]
        where = SegmentRows(tuple(data["markers"]), whole.rows, tuple(data["thinking_rows"]), None if answer_rows is None else tuple(answer_rows))
        answer = None if data[ANSWER] is None else _part_from_dict(data[ANSWER], whole)
        return cls(where, _part_from_dict(data[THINKING], whole), answer)


def _digits(values):
    """7 significant digits, as the stepwise bins keep them (the probe computes in float32)."""
    return [_digits(v) for v in values] if isinstance(values, list) else float(f"{values:.7g}")


def _part_dict(part: SampleStats) -> dict[str, Any]:
    # classes, counts and heads are the sample's own: not repeated per segment
    out = part.to_dict()
    for key in ("classes", "counts", "heads"):
        del out[key]
    out["mass"], out["generated"] = _digits(out["mass"]), _digits(out["generated"])
    for sub in out.get("subclasses", {}).values():
        sub["mass"] = _digits(sub["mass"])
    return out


def _part_from_dict(data: Mapping[str, Any], whole: SampleStats) -> SampleStats:
    return SampleStats.from_dict({**data, "classes": list(whole.classes), "counts": list(whole.counts), "heads": whole.heads})


def segment_values(stats: SampleStats) -> dict[str, float | int | bool | None]:
    """``{"mdi_early_thinking": ..., "aei_late_answer": ..., "rows_thinking": ..., "rows_answer": ...,
    "truncated": ...}``; every value None when the sample has no segments, the answer's when truncated."""
    keys = [f"{m}_{g}_{s}" for s in SEGMENTS for m in METRICS for g in GROUPS]
    segments = stats.segments
    if segments is None:
        return {**{k: None for k in keys}, f"rows_{THINKING}": None, f"rows_{ANSWER}": None, "truncated": None}
    out: dict[str, Any] = {}
    for name, part in ((THINKING, segments.thinking), (ANSWER, segments.answer)):
        groups = {g: sample_dominance(part, idx) for g, idx in layer_groups(part.num_layers).items()} if part is not None else {}
        out.update({f"{m}_{g}_{name}": getattr(groups[g], m) if part is not None else None for m in METRICS for g in GROUPS})
        out[f"rows_{name}"] = None if part is None else part.rows
    out["truncated"] = segments.truncated
    return out
