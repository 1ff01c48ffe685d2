"""Which attention entries the attention-path edits touch: rows after a sample's non-text span, keys of
chosen prompt positions (torch only).

Knock-outs and the mitigation switches act on the same entries: a query row at a position after the
last non-text position of its sample (the text after the span and every generated token), attending
a key at a chosen prompt position (the non-text positions, or the system prompt). A sample without
any non-text position has no such row.
"""

from __future__ import annotations

import torch

from lmms_textdom.core.modality import PAD, PositionClasses
from lmms_textdom.core.probe import ProbeError
from lmms_textdom.core.text_parts import SINK, TEMPLATE


class AfterNontext:
    def __init__(self, classes: PositionClasses):
        self.classes = classes
        ids = classes.ids
        self.nontext = ids > 0  # text is class 0, padding -1
        positions = torch.arange(ids.shape[1])
        last = torch.where(self.nontext, positions, torch.full_like(positions, -1)).max(1).values
        # rows after this position are edited; a sample without non-text: none (past every position)
        self.last = torch.where(self.nontext.any(1), last, torch.full_like(last, torch.iinfo(torch.long).max))
        self._on: dict[tuple, torch.Tensor] = {}

    @property
    def batch_size(self) -> int:
        return self.classes.batch_size

    def system(self) -> torch.Tensor:
        """(batch, prompt) bool: the system prompt, i.e. the sink and template text before the first
        position that is neither (the first non-text or task token): BOS, system message, role tag."""
        parts = self.classes.subclasses
        if SINK not in parts or TEMPLATE not in parts:
            raise ProbeError("the class map has no text sub-classes (sink, template), so the system prompt is unknown")
        ids = self.classes.ids
        lead = parts[SINK] | parts[TEMPLATE]
        positions = torch.arange(ids.shape[1])
        other = (ids != PAD) & ~lead
        first_other = torch.where(other, positions, torch.full_like(positions, ids.shape[1])).min(1).values
        return lead & (positions[None, :] < first_other[:, None])

    def _cached(self, name: str, tensor: torch.Tensor, device) -> torch.Tensor:
        key = (name, device)
        if key not in self._on:
            self._on[key] = tensor.to(device)
        return self._on[key]

    def select(self, name: str, keys: torch.Tensor, rows: torch.Tensor, first_key: int, width: int) -> torch.Tensor:
        """(batch, rows, width) bool: row after its sample's span and key column among ``keys``.

        keys (batch, prompt) bool, cached on each device under ``name``; rows the absolute positions of
        the query rows; columns are positions first_key .. first_key + width - 1 (beyond the prompt: none).
        """
        device = rows.device
        keys, last = self._cached(name, keys, device), self._cached("last", self.last, device)
        batch, prompt = keys.shape
        columns = torch.zeros(batch, width, dtype=torch.bool, device=device)
        inside = max(0, min(prompt - first_key, width))
        columns[:, :inside] = keys[:, first_key : first_key + inside]
        after = rows[None, :] > last[:, None]  # (batch, rows)
        return after[:, :, None] & columns[:, None, :]

    def check_batch(self, batch: int) -> None:
        if batch != self.batch_size:
            raise ProbeError(f"the attention edit's class map has {self.batch_size} sequences but the model runs {batch}")
