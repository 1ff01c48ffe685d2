"""Re-indexing a language model's input sequence: drop (prune) or replicate non-text positions.

Both edits are a choice of positions per sample: text positions stay once and in order; each
non-text span (a run of one class, e.g. one image's tokens) contributes its kept positions, in
order, ``repeat`` times in a row. The chosen positions are gathered from every per-position tensor
(embeddings, mask, class ids, position ids) and the batch is left-padded again, so positions stay
contiguous exactly as if the shorter (or longer) prompt had been given.
"""

from __future__ import annotations

from typing import Sequence

import torch

from lmms_textdom.modality import PAD


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


def unit_spans(class_ids: torch.Tensor, unit_sizes: Sequence[int]) -> list[list[tuple[int, int]]]:
    """Per sample, the (start, end) of every non-text unit (one image, one audio clip), in order.

    ``unit_sizes`` are the units' token counts in batch order, the order in which processors lay out
    their placeholders; one run of a class may hold several adjacent units.
    """
    per_sample, unit = [], 0
    for row in class_ids:
        spans: list[tuple[int, int]] = []
        for start, end in nontext_spans(row):
            first = last = unit + len(spans)
            while sum(unit_sizes[first:last]) < end - start and last < len(unit_sizes):
                last += 1
            spans += split_span((start, end), unit_sizes[first:last])
        unit += len(spans)
        per_sample.append(spans)
    if unit != len(unit_sizes):
        raise ValueError(f"{len(unit_sizes)} non-text units given, but the placeholders hold {unit}")
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
