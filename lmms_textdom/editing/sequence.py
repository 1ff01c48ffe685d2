"""Re-indexing a language model's input sequence: drop (prune) or replicate non-text positions.

Both edits are a choice of positions per sample: text positions stay once and in order; each
non-text span (a run of one class, e.g. one image's tokens) contributes its kept positions, in
order, ``repeat`` times in a row. The chosen positions are gathered from every per-position tensor
(embeddings, mask, class ids, position ids) and the batch is left-padded again, so positions stay
contiguous exactly as if the shorter (or longer) prompt had been given.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch

from lmms_textdom.core.modality import PAD, PositionClasses
from lmms_textdom.editing.pruning import kept_count, top_m_in_order


def nontext_spans(class_ids: torch.Tensor) -> list[tuple[int, int]]:
    """(start, end) of each run of one non-text class in a 1-D class-id row."""
    spans = []
    values = class_ids.tolist()
    start = None
    for i, value in enumerate([*values, PAD]):
        if start is not None and value != values[start]:
            spans.append((start, i))
            start = None
        if start is None and i < len(values) and value > 0:
            start = i
    return spans


def split_span(span: tuple[int, int], sizes: Sequence[int]) -> list[tuple[int, int]]:
    """Cut one run into consecutive pieces of the given sizes (adjacent images with no separator)."""
    start, end = span
    if sum(sizes) != end - start:
        raise ValueError(f"a run of {end - start} non-text positions cannot hold pieces of sizes {list(sizes)}")
    pieces = []
    for size in sizes:
        pieces.append((start, start + size))
        start += size
    return pieces


def item_spans(class_ids: torch.Tensor, sizes: Mapping[int, Sequence[int]]) -> list[list[tuple[int, int, tuple[int, int]]]]:
    """Per sample, every non-text item (one image, one video) as (class id, item number, (start, end)).

    ``sizes[c]`` lists the lengths of the items of class ``c`` in batch order (the order a
    processor lays out their placeholders); item number indexes that list. A run of one class
    may hold several adjacent items (images with no separator); it is cut by their sizes.
    """
    used = {c: 0 for c in sizes}
    per_sample = []
    for row in class_ids:
        items = []
        for start, end in nontext_spans(row):
            c = int(row[start])
            if c not in sizes:
                raise ValueError(f"non-text class {c} at positions {start}..{end} has no item sizes")
            first = last = used[c]
            while sum(sizes[c][first:last]) < end - start and last < len(sizes[c]):
                last += 1
            pieces = split_span((start, end), sizes[c][first:last])
            items += [(c, first + j, span) for j, span in enumerate(pieces)]
            used[c] = last
        per_sample.append(items)
    for c, count in used.items():
        if count != len(sizes[c]):
            raise ValueError(f"{len(sizes[c])} items of class {c} given, but the placeholders hold {count}")
    return per_sample


def plan_positions(
    class_ids: torch.Tensor, spans: Sequence[tuple[int, int]], span_keep: Sequence[torch.Tensor | None], repeat: int = 1
) -> torch.Tensor:
    """Positions of the edited sequence for one sample (padding dropped).

    ``spans`` are the non-text units in order (``nontext_spans``, possibly split per image);
    ``span_keep[j]`` holds the kept offsets within span j (None = keep all); every span's kept
    positions are then written ``repeat`` times in a row.
    """
    if len(span_keep) != len(spans):
        raise ValueError(f"{len(span_keep)} keep lists for {len(spans)} non-text spans")
    pieces = []
    cursor = 0
    for (start, end), keep in zip(spans, span_keep):
        pieces.append(torch.arange(cursor, start))
        offsets = torch.arange(end - start) if keep is None else keep.cpu().long()
        pieces.append((start + offsets).repeat(repeat))
        cursor = end
    pieces.append(torch.arange(cursor, class_ids.shape[0]))
    positions = torch.cat(pieces)
    return positions[class_ids[positions].cpu() != PAD]


def gather_left_padded(positions: Sequence[torch.Tensor], tensors: dict[str, tuple[torch.Tensor, float]], seq_dim: int = 1):
    """Gather ``positions[b]`` along ``seq_dim`` of each (tensor, pad value); left-pad to one length.

    ``seq_dim`` counts with the batch as dim 0 for every tensor except position ids of shape
    (rows, batch, seq), passed under a key starting with ``position_ids`` (batch is dim 1 there).
    """
    out = {}
    for name, (tensor, pad) in tensors.items():
        batch_dim, dim = (1, tensor.dim() - 1) if name.startswith("position_ids") else (0, seq_dim)
        rows = [tensor.select(batch_dim, b).index_select(dim - 1, pos.to(tensor.device)) for b, pos in enumerate(positions)]
        rows = [row.movedim(dim - 1, 0) for row in rows]  # sequence first for padding
        out[name] = left_pad_stack(rows, pad).movedim(1, dim).movedim(0, batch_dim)
    return out


def splice(row: torch.Tensor, spans: Sequence[tuple[int, int]], contents: Sequence[torch.Tensor], repeat: int = 1) -> torch.Tensor:
    """``row`` (sequence first) with each span replaced by its new content, written ``repeat`` times."""
    pieces, cursor = [], 0
    for (start, end), content in zip(spans, contents):
        pieces += [row[cursor:start], content.to(row.device, row.dtype).repeat(repeat, *([1] * (content.dim() - 1)))]
        cursor = end
    pieces.append(row[cursor:])
    return torch.cat(pieces)


def left_pad_stack(rows: Sequence[torch.Tensor], pad: float) -> torch.Tensor:
    """Stack rows (sequence first) of different lengths into one batch, padded on the left."""
    length = max(row.shape[0] for row in rows)
    return torch.stack([torch.cat([row.new_full((length - row.shape[0], *row.shape[1:]), pad), row]) for row in rows])


def edit_nontext(
    classes: PositionClasses,
    sizes: Mapping[int, Sequence[int]],
    scores: Mapping[int, Sequence[torch.Tensor]] | None,
    ratio: float,
    repeat: int,
    tensors: dict[str, tuple[torch.Tensor, float]],
) -> tuple[dict[str, torch.Tensor], PositionClasses, list[dict]]:
    """Prune and/or replicate every non-text item of a batch; returns (tensors, classes, per-sample counts:
    ``nontext_original`` / ``nontext_kept`` in all and ``nontext_items``, [original, kept] per item).

    Each item keeps its ``kept_count(size, ratio)`` best-scored positions (``scores[c][item]``,
    one score per position) in their original order, all of them when ``ratio`` is 0, then is
    written ``repeat`` times. ``tensors`` are gathered as ``gather_left_padded`` does.
    """
    positions, counts = [], []
    # where each position sits in its item before the edit, carried through it (attention maps place positions by it)
    item_index, item_offset = torch.full_like(classes.ids, -1), torch.full_like(classes.ids, -1)
    for b, (row, items) in enumerate(zip(classes.ids, item_spans(classes.ids, sizes))):
        numbers: dict[int, int] = {}
        for c, _, (start, end) in items:
            item_index[b, start:end] = numbers.setdefault(c, 0)
            numbers[c] += 1
            given = None if classes.item_offset is None else classes.item_offset[b, start:end]
            item_offset[b, start:end] = torch.arange(end - start) if given is None or bool((given < 0).any()) else given
        spans = [span for _, _, span in items]
        keep = [
            top_m_in_order(scores[c][item], kept_count(end - start, ratio)) if ratio > 0 else None
            for c, item, (start, end) in items
        ]
        positions.append(plan_positions(row, spans, keep, repeat))
        items_kept = [[end - start, end - start if k is None else len(k)] for (start, end), k in zip(spans, keep)]
        original, kept = (sum(column) for column in zip(*items_kept)) if items_kept else (0, 0)
        # per item (image, frame, clip, series, graph): its tokens before and after pruning
        counts.append({"nontext_original": original, "nontext_kept": kept, "nontext_items": items_kept})
    subclass_keys = {f"subclass:{name}": name for name in classes.subclasses}
    carried = {key: (classes.subclasses[name], False) for key, name in subclass_keys.items()}
    carried.update({"item_index": (item_index, -1), "item_offset": (item_offset, -1)})
    edited = gather_left_padded(positions, {**tensors, **carried, "class_ids": (classes.ids, PAD)})
    subclasses = {name: edited.pop(key) for key, name in subclass_keys.items()}
    placed = {name: edited.pop(name).cpu() for name in ("item_index", "item_offset")}
    return edited, PositionClasses(classes.names, edited.pop("class_ids"), subclasses, **placed), counts
