"""Where each position of an attention map lies in its image, video, clip, series or graph.

With ``attention_maps`` on, a family describes each non-text item of a sample (``TextdomModel.map_items``),
in sequence order, as one dict:

- ``class``: its position class; ``kind``: image, video, audio, time_series, graph, or positions
  (a family that describes nothing: a run of the class's positions, drawn as a strip);
- ``positions``: its positions in the language model's sequence (after pruning and replication);
- ``offsets`` (only where the item was pruned or replicated): for each of those positions, in order,
  its index in the item's layout below (a pruned token keeps the index it had; copies repeat it);
  without it the positions are the layout in order;
- ``parts`` (optional): sizes of consecutive parts that are never pooled together (video frames);
- and what the kind needs to be drawn, small enough to travel in the record (``docs: attention-maps``):
  - image: ``thumbnail`` (a JPEG data URL, longest side ``THUMBNAIL_SIDE``), ``size`` (the image's
    width and height in pixels) and ``views``, each a
    token grid ``{"start", "rows", "cols", "box"[, "newline"]}``: layout indices start .. in raster
    order, ``box`` = (left, top, right, bottom) of the grid in fractions of the thumbnail (beyond
    0..1 where the grid covers padding), ``newline``: each row ends with one more token that has no place;
  - video: ``frames``, each ``{"start", "tokens", "time", "frame", "thumbnail"}`` (layout indices
    start .. start + tokens - 1; time in seconds or None; thumbnails for at most ``FRAME_THUMBNAILS``
    frames), ``size`` (a frame's width and height) and ``grid`` (rows, cols of one frame's tokens)
    where a frame's tokens form a grid;
  - audio: ``seconds``, ``seconds_per_token``, ``envelope`` (min and max of the waveform in ``ENVELOPE_BINS`` bins);
  - time_series: ``patch_size`` (token i covers values i * patch_size ...), ``length``, ``values``
    (at most ``SERIES_POINTS``, every ``step``-th value);
  - graph: ``node_ids`` (the graph's own node ids where the task gives them, else 0, 1, ...).

Nothing here imports lmms-eval or a model: plain PIL, numpy and torch tensors in, JSON values out.
"""

from __future__ import annotations

import base64
import io
import math
from typing import Any, Sequence

import numpy as np
import torch
from PIL import Image

from lmms_textdom.core.modality import PositionClasses

THUMBNAIL_SIDE = 160
FRAME_SIDE = 80
FRAME_THUMBNAILS = 16
ENVELOPE_BINS = 200
SERIES_POINTS = 512
JPEG_QUALITY = 70


def thumbnail(image: Image.Image, side: int = THUMBNAIL_SIDE) -> str:
    """A small JPEG of ``image`` (longest side ``side``, aspect kept) as a data URL."""
    image = image.convert("RGB")
    scale = side / max(image.size)
    if scale < 1:
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def item_positions(classes: PositionClasses, b: int, name: str, layout_sizes: Sequence[int]) -> list[tuple[int, list[int] | None]]:
    """(positions, offsets or None) of each item of class ``name`` in sample b, in sequence order.

    ``layout_sizes``: each item's tokens as the processor laid it out; unedited items take them in order.
    """
    c = classes.names.index(name)
    where = classes.ids[b].cpu() == c
    if classes.item_index is None:
        if sum(layout_sizes) != int(where.sum()):
            raise ValueError(f"items of {list(layout_sizes)} tokens do not fill the {int(where.sum())} {name} positions of sample {b}")
        return [(int(n), None) for n in layout_sizes]
    index, offset = classes.item_index[b].cpu()[where], classes.item_offset[b].cpu()[where]
    out = []
    for j, size in enumerate(layout_sizes):
        mine = offset[index == j]
        if len(mine) and int(mine.max()) >= size:
            raise ValueError(f"item {j} of {name} has {size} tokens in its layout but a position at offset {int(mine.max())}")
        out.append((len(mine), mine.tolist()))
    if sum(n for n, _ in out) != int(where.sum()):
        raise ValueError(f"the {name} items of sample {b} hold {sum(n for n, _ in out)} of its {int(where.sum())} positions")
    return out


def base_item(name: str, kind: str, positions: int, offsets: list[int] | None, **fields: Any) -> dict[str, Any]:
    item = {"class": name, "kind": kind, "positions": int(positions), **fields}
    if offsets is not None:
        item["offsets"] = [int(o) for o in offsets]
    return item


def grid_view(start: int, rows: int, cols: int, box=(0.0, 0.0, 1.0, 1.0), newline: bool = False) -> dict[str, Any]:
    view = {"start": int(start), "rows": int(rows), "cols": int(cols), "box": [round(float(v), 5) for v in box]}
    if newline:
        view["newline"] = True
    return view


def image_item(name: str, image: Image.Image, views: list[dict], positions: int, offsets: list[int] | None) -> dict[str, Any]:
    return base_item(name, "image", positions, offsets, thumbnail=thumbnail(image), size=list(image.size), views=views)


def frame_parts(frames: Sequence[dict], offsets: list[int] | None, positions: int) -> list[int]:
    """Sizes of the runs of positions that fall in one frame (pooling never mixes two frames)."""
    if offsets is None:
        return [int(f["tokens"]) for f in frames if f["tokens"]]
    starts = np.array([f["start"] for f in frames])
    frame_of = np.searchsorted(starts, np.asarray(offsets), side="right") - 1
    if len(frame_of) != positions:
        raise ValueError(f"{len(frame_of)} offsets for {positions} positions")
    edges = np.flatnonzero(np.diff(frame_of)) + 1
    return np.diff(np.concatenate([[0], edges, [positions]])).astype(int).tolist() if positions else []


def video_item(
    name: str, frames: Sequence[dict], images: Sequence[Image.Image | None], positions: int, offsets: list[int] | None,
    grid: tuple[int, int] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """``frames``: {"start", "tokens", "time", "frame"} per frame (or temporal token group); ``images`` its picture."""
    shown = set(np.linspace(0, len(frames) - 1, min(FRAME_THUMBNAILS, len(frames))).round().astype(int).tolist()) if frames else set()
    described = []
    for i, (frame, image) in enumerate(zip(frames, images)):
        time = frame.get("time")
        described.append({
            "start": int(frame["start"]), "tokens": int(frame["tokens"]), "time": None if time is None else round(float(time), 3),
            "frame": frame.get("frame"), "thumbnail": thumbnail(image, FRAME_SIDE) if i in shown and image is not None else None,
        })  # fmt: skip
    fields: dict[str, Any] = {"frames": described, "parts": frame_parts(described, offsets, positions)}
    pictures = [image for image in images if image is not None]
    if pictures:
        fields["size"] = list(pictures[0].size)
    if grid is not None:
        fields["grid"] = [int(grid[0]), int(grid[1])]
    return base_item(name, "video", positions, offsets, **fields)


def envelope(samples: np.ndarray, bins: int = ENVELOPE_BINS) -> list[list[float]]:
    """[min, max] of the waveform in ``bins`` equal bins (fewer for a shorter clip)."""
    samples = np.asarray(samples, dtype=np.float64).reshape(-1)
    if samples.size == 0:
        return []
    parts = np.array_split(samples, min(bins, samples.size))
    return [[round(float(p.min()), 4), round(float(p.max()), 4)] for p in parts]


def audio_item(name: str, samples: np.ndarray, seconds: float, tokens: int, positions: int, offsets: list[int] | None) -> dict[str, Any]:
    return base_item(
        name, "audio", positions, offsets, seconds=round(float(seconds), 4),
        seconds_per_token=float(seconds) / max(int(tokens), 1), envelope=envelope(samples),
    )  # fmt: skip


def series_item(name: str, values: Sequence[float], patch_size: int, positions: int, offsets: list[int] | None) -> dict[str, Any]:
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    step = max(1, math.ceil(values.size / SERIES_POINTS))
    return base_item(
        name, "time_series", positions, offsets, patch_size=int(patch_size), length=int(values.size), step=step,
        values=[float(f"{v:.6g}") for v in values[::step]],
    )  # fmt: skip


def graph_item(name: str, node_ids: Sequence, positions: int, offsets: list[int] | None) -> dict[str, Any]:
    return base_item(name, "graph", positions, offsets, node_ids=[n if isinstance(n, (int, str)) else int(n) for n in node_ids])


def run_items(classes: PositionClasses, b: int) -> list[dict[str, Any]]:
    """Items of a family that describes none: each run of a non-text class, with its size only."""
    ids = classes.ids[b].cpu().tolist()
    items, start = [], None
    for i, c in enumerate([*ids, -1]):
        if start is not None and c != ids[start]:
            items.append(base_item(classes.names[ids[start]], "positions", i - start, None))
            start = None
        if start is None and i < len(ids) and c > 0:
            start = i
    return items


def parts_of(items: Sequence[dict], names: Sequence[str]) -> dict[str, list[int]]:
    """Per non-text class, the sizes of its items' parts in sequence order (``PositionMaps`` pools within them)."""
    out: dict[str, list[int]] = {name: [] for name in names}
    for item in items:
        out[item["class"]] += [int(s) for s in item.get("parts", [item["positions"]]) if s]
    return out


def tensor_list(value) -> list:
    return value.tolist() if isinstance(value, torch.Tensor) else list(value)
