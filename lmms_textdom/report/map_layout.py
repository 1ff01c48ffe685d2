"""From a stored attention map to what is drawn: values per item in the item's own layout (numpy only).

A class's map holds its positions in sequence order (or bins of ``pool`` neighbouring positions,
whose value is spread evenly over them here); the class's items take those positions in turn. An
item's positions land on its layout indices (``offsets``, else in order): copies of a replicated
token add up on its index, and an index no position landed on (a pruned or compressed token) is
``dropped`` (NaN in the layout).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from lmms_textdom.core.attention_maps import AttentionMaps, bins_per_part


def per_position(values: np.ndarray, parts: Sequence[int], pool: int) -> np.ndarray:
    """A class's stored values expanded to one value per position (a bin's value split evenly over its positions)."""
    values = np.asarray(values, dtype=np.float64)
    if pool == 1:
        return values
    out, first = [], 0
    for size, bins in zip(parts, bins_per_part(parts, pool)):
        sizes = np.full(bins, pool)
        if bins:
            sizes[-1] = size - pool * (bins - 1)
        out.append(np.repeat(values[first : first + bins] / sizes, sizes))
        first += bins
    return np.concatenate(out) if out else np.zeros(0)


def layout_size(item: Mapping[str, Any]) -> int:
    """Tokens in the item's layout (before pruning or replication)."""
    kind = item["kind"]
    if kind == "image" and item.get("views"):
        return max(v["start"] + v["rows"] * (v["cols"] + bool(v.get("newline"))) for v in item["views"])
    if kind == "video" and item.get("frames"):
        return max(f["start"] + f["tokens"] for f in item["frames"])
    if kind == "time_series" and item.get("patch_size"):
        return math.ceil(item["length"] / item["patch_size"])
    if kind == "graph" and item.get("node_ids") is not None:
        return len(item["node_ids"])
    if kind == "audio" and item.get("seconds_per_token"):
        return max(round(item["seconds"] / item["seconds_per_token"]), 1 + max(item.get("offsets", [item["positions"] - 1]), default=0))
    return 1 + max(item.get("offsets", [item["positions"] - 1]), default=-1)


@dataclass(frozen=True)
class PlacedItem:
    """One item of one sample in one layer group: its description and its values per layout index (NaN: dropped)."""

    item: Mapping[str, Any]
    values: np.ndarray

    @property
    def kind(self) -> str:
        return self.item["kind"]

    def grid(self, view: Mapping[str, Any]) -> np.ndarray:
        """(rows, cols) values of an image view (a trailing newline token per row left out)."""
        rows, cols = view["rows"], view["cols"]
        stride = cols + bool(view.get("newline"))
        cells = self.values[view["start"] : view["start"] + rows * stride].reshape(rows, stride)
        return cells[:, :cols]

    def frame_sums(self) -> np.ndarray:
        """Per frame (or temporal token group), the attention its tokens received (NaN where all were dropped)."""
        out = []
        for frame in self.item["frames"]:
            part = self.values[frame["start"] : frame["start"] + frame["tokens"]]
            out.append(np.nan if np.all(np.isnan(part)) else float(np.nansum(part)))
        return np.array(out)


def placed_items(maps: AttentionMaps, group: str, groups: Mapping[str, Mapping[str, np.ndarray]] | None = None) -> list[PlacedItem]:
    """Every item of the sample with its values in group ``group`` (``groups``: e.g. a quarter's maps instead)."""
    by_class = (groups or maps.groups)[group]
    expanded = {name: per_position(by_class[name], maps.parts[name], maps.pool[name]) for name in maps.classes}
    used = {name: 0 for name in maps.classes}
    out = []
    for item in maps.items:
        name, n = item["class"], item["positions"]
        mine = expanded[name][used[name] : used[name] + n]
        used[name] += n
        layout = np.full(layout_size(item), np.nan)
        index = np.asarray(item.get("offsets", range(n)), dtype=np.int64)
        if n:
            layout[np.unique(index)] = 0.0
            np.add.at(layout, index, mine)
        out.append(PlacedItem(item, layout))
    return out
