"""Attention maps inside the probe: the attention each non-text position receives (torch only).

The probe's batched pass gives, per layer, the softmax rows of the answer summed over heads,
(batch, rows, keys). Its per-class sums are one reduction of that tensor; the maps are one more:
each key column added into the stored value of its position (``core/attention_maps.py``: one per
non-text position, or per bin of neighbouring positions when a class is pooled), per row and layer
group. Text, padding and generated positions go to one extra column that is dropped. Nothing here
is sequence x sequence: per row, one vector of at most ``LIMIT`` values per class and group.

Rows are kept apart until the answers' lengths are known (a finished sequence's later rows are left
out, as in the stats), then summed: ``(steps, groups, batch, values)`` float32, values <= LIMIT per
class; the first and last quarter of the answer (``attention_maps=steps``) are sums of the same rows.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch

from lmms_textdom.core import attention_maps as record
from lmms_textdom.core.attention_maps import AttentionMaps, bin_of_positions, bins_per_part, choose_pool
from lmms_textdom.core.metrics import layer_groups
from lmms_textdom.core.modality import PositionClasses
from lmms_textdom.core.stepwise import BINS, HEAD, slot_rows


def run_lengths(positions: torch.Tensor) -> list[int]:
    """Lengths of the runs of consecutive numbers in a sorted 1-D tensor of positions."""
    if positions.numel() == 0:
        return []
    breaks = (positions[1:] - positions[:-1] != 1).nonzero().flatten() + 1
    edges = [0, *breaks.tolist(), positions.numel()]
    return [b - a for a, b in zip(edges, edges[1:])]


def quarter_rows(n: int) -> dict[str, np.ndarray]:
    """Rows of the answer's first and last quarter: the relative bins ``core/views.quarter_slots`` uses."""
    bins = slot_rows(n)[HEAD:]
    quarter = max(1, BINS // 4)
    return {"first": np.concatenate(bins[:quarter]), "last": np.concatenate(bins[-quarter:])}


class PositionMaps:
    """Per-row maps of one probed batch (module docstring).

    ``parts[b][class]``: positions of each item of that class in sample b, in sequence order, so
    that pooling never mixes two items; default: each run of the class's positions is a part.
    """

    def __init__(self, classes: PositionClasses, num_layers: int, parts: Sequence[Mapping[str, Sequence[int]]] | None = None, limit: int | None = None):
        limit = record.LIMIT if limit is None else limit
        self.layers = layer_groups(num_layers)
        self.groups_of_layer = [tuple(g for g, idx in enumerate(self.layers.values()) if layer in idx) for layer in range(num_layers)]
        self.names = classes.names[1:]
        ids = classes.ids.cpu()
        if parts is not None and len(parts) != ids.shape[0]:
            raise ValueError(f"{len(parts)} part lists for a batch of {ids.shape[0]}")
        index = torch.full(ids.shape, -1, dtype=torch.long)
        self.plans: list[dict[str, tuple[list[int], int, slice]]] = []  # per sample: class -> (parts, pool, values)
        for b, row in enumerate(ids):
            plan, first = {}, 0
            for c, name in enumerate(self.names, start=1):
                where = (row == c).nonzero().flatten()
                given = None if parts is None else parts[b].get(name)
                sizes = run_lengths(where) if given is None else [int(s) for s in given]
                if sum(sizes) != where.numel() or any(s < 1 for s in sizes):
                    raise ValueError(f"sample {b}: parts {sizes} of {name!r} do not cover its {where.numel()} positions")
                pool = choose_pool(sizes, limit)
                index[b, where] = torch.from_numpy(bin_of_positions(sizes, pool)) + first
                count = sum(bins_per_part(sizes, pool))
                plan[name] = (sizes, pool, slice(first, first + count))
                first += count
            self.plans.append(plan)
        self.values = max((max((p[2].stop for p in plan.values()), default=0) for plan in self.plans), default=0)
        index[index < 0] = self.values  # the dropped column
        self._index = index
        self._prompt_len = ids.shape[1]
        self._columns: dict[tuple, torch.Tensor] = {}
        self._rows: torch.Tensor | None = None  # (capacity, groups, batch, values)

    def _column_index(self, first: int, width: int, device) -> torch.Tensor:
        """(batch, width) stored-value index of key positions first .. first + width - 1."""
        key = (first, width, device)
        found = self._columns.get(key)
        if found is None:
            if len(self._columns) > 4:  # widths grow step by step; keep only the latest few
                self._columns.clear()
            prompt = self._index[:, first : first + width]
            found = torch.full((self._index.shape[0], width), self.values, dtype=torch.long)
            found[:, : prompt.shape[1]] = prompt
            found = self._columns[key] = found.to(device)
        return found

    def add(self, start: int, layer: int, per_position: torch.Tensor, first_position: int = 0) -> None:
        """Rows start, start + 1, ... of one layer: ``per_position`` (batch, rows, keys) from key position ``first_position``."""
        groups = self.groups_of_layer[layer]
        if not groups or not self.values:
            return
        batch, rows, width = per_position.shape
        index = self._column_index(first_position, width, per_position.device)
        pooled = per_position.new_zeros(batch, rows, self.values + 1)
        pooled.scatter_add_(2, index[:, None, :].expand(batch, rows, width), per_position)
        end = start + rows
        if self._rows is None or end > self._rows.shape[0]:
            grown = per_position.new_zeros(max(end, 64, 0 if self._rows is None else 2 * self._rows.shape[0]), len(self.layers), batch, self.values)
            if self._rows is not None:
                grown[: self._rows.shape[0]] = self._rows
            self._rows = grown
        kept = pooled[..., : self.values].transpose(0, 1)
        for g in groups:
            self._rows[start:end, g] += kept

    def _split(self, summed: np.ndarray, b: int) -> dict[str, dict[str, np.ndarray]]:
        """(groups, values) of sample b -> {group: {class: float32 values}}."""
        return {g: {name: summed[i, values].astype(np.float32) for name, (_, _, values) in self.plans[b].items()} for i, g in enumerate(self.layers)}

    def sample_maps(self, lengths: Sequence[int], quarters: bool = False) -> list[AttentionMaps]:
        """One ``AttentionMaps`` per sample over its first ``lengths[b]`` rows (no placement items yet)."""
        total = max(lengths, default=0)
        if self._rows is None:
            data = np.zeros((total, len(self.layers), len(self.plans), self.values))
        else:
            data = self._rows[:total].double().cpu().numpy()
        out = []
        for b, n in enumerate(lengths):
            rows = data[:n, :, b]
            quarter_maps = None
            if quarters:
                quarter_maps = {q: {"rows": len(r), "groups": self._split(rows[r].sum(axis=0), b)} for q, r in quarter_rows(n).items()}
            plan = self.plans[b]
            out.append(AttentionMaps(
                parts={name: sizes for name, (sizes, _, _) in plan.items()}, pool={name: pool for name, (_, pool, _) in plan.items()},
                layers=self.layers, rows=n, groups=self._split(rows.sum(axis=0), b), quarters=quarter_maps,
            ))  # fmt: skip
        return out
