"""The language model's input for a batch of GraphGPT prompts: token embeddings with each graph's
projected node features over its ``<g_patch>`` slots, and the class of every position."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from lmms_textdom.core.errors import UsageError
from lmms_textdom.core.modality import PositionClasses, classify_tokens
from lmms_textdom.core.text_parts import with_text_parts
from lmms_textdom.editing.sequence import edit_nontext, left_pad_stack

GRAPH_CLASS = "graph"
#: <g_start> / <g_end>: text for the metrics, kept apart in the record
MARKER_SUBCLASS = "graph_marker"


@dataclass(frozen=True)
class GraphTokens:
    patch: int
    start: int
    end: int
    pad: int
    bos: int | None


def tokenize(tokenizer, prompt: str, tokens: GraphTokens) -> list[int]:
    """Token ids of the prompt, BOS first (as Llama's tokenizer adds it; added if a tokenizer does not)."""
    ids = tokenizer(prompt, add_special_tokens=True)["input_ids"]
    if tokens.bos is not None and (not ids or ids[0] != tokens.bos):
        ids = [tokens.bos, *ids]
    return ids


def graph_starts(ids: torch.Tensor, tokens: GraphTokens, sizes: Sequence[int]) -> list[int]:
    """Position of each graph's ``<g_start>``, checked: its ``<g_end>`` sits right after its node slots."""
    starts = torch.nonzero(ids == tokens.start).flatten().tolist()
    if len(starts) != len(sizes):
        raise UsageError(f"the prompt holds {len(starts)} graph start markers for {len(sizes)} graphs")
    for start, size in zip(starts, sizes):
        end = start + size + 1
        if end >= len(ids) or int(ids[end]) != tokens.end or int((ids[start + 1 : end] == tokens.patch).sum()) != size:
            raise UsageError(f"a graph of {size} nodes does not fill <g_start> {size} x <g_patch> <g_end> in the tokenized prompt")
    return starts


def build_inputs(
    embed, prompts_ids: Sequence[list[int]], features: Sequence[Sequence[torch.Tensor]], tokens: GraphTokens,
    repeat: int = 1, last_graph_only: bool = False, text_parts: tuple | None = None,
) -> tuple[dict[str, torch.Tensor], PositionClasses, list[dict]]:
    """(inputs_embeds + attention_mask, classes, per-sample counts) for a left-padded batch.

    ``features[b][j]`` is graph j of sample b, projected: one row per node, spliced over that graph's
    ``<g_patch>`` slots. ``last_graph_only`` keeps upstream's splice, where only the last graph of a
    prompt gets its features and the others keep the ``<g_patch>`` embedding. ``repeat`` writes each
    graph's node span ``repeat`` times in place (text unchanged). ``text_parts`` = (prompt strings,
    task text pieces, tokenizer) adds the sink / template / task sub-classes beside the markers.
    """  # fmt: skip
    rows = [torch.tensor(ids, dtype=torch.long) for ids in prompts_ids]
    ids = left_pad_stack(rows, tokens.pad)
    mask = left_pad_stack([torch.ones_like(r) for r in rows], 0)
    device = embed.weight.device
    embeds = embed(ids.to(device))
    for b, graphs in enumerate(features):
        sizes = [g.shape[0] for g in graphs]
        starts = graph_starts(ids[b], tokens, sizes)
        spliced = list(zip(starts, graphs))[-1:] if last_graph_only else zip(starts, graphs)
        for start, graph in spliced:
            embeds[b, start + 1 : start + 1 + graph.shape[0]] = graph.to(device, embeds.dtype)
    classes = classify_tokens(ids, {GRAPH_CLASS: tokens.patch}, mask)
    counts = [{"graph_nodes": [g.shape[0] for g in graphs]} for graphs in features]
    if repeat > 1:
        sizes = {1: [g.shape[0] for graphs in features for g in graphs]}
        tensors = {"inputs_embeds": (embeds, 0.0), "attention_mask": (mask.to(device), 0), "input_ids": (ids, tokens.pad)}
        edited, classes, edit_counts = edit_nontext(classes, sizes, None, 0.0, repeat, tensors)
        ids, embeds, mask = edited["input_ids"], edited["inputs_embeds"], edited["attention_mask"]
        counts = [{**c, **e} for c, e in zip(counts, edit_counts)]
    markers = torch.isin(ids, torch.tensor([tokens.start, tokens.end]))
    classes = classes.with_subclasses({MARKER_SUBCLASS: markers & (classes.ids == 0)})
    if text_parts is not None:
        classes = with_text_parts(classes, ids, *text_parts)
    return {"inputs_embeds": embeds, "attention_mask": mask.to(device)}, classes, counts
