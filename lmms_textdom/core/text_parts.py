"""Split the text positions into sink, template and the task's own text (text sub-classes).

Every text position of the language model's input gets exactly one part:

- ``sink``: the first position of the sequence (after left padding) when it is text (the BOS
  token where the tokenizer adds one, else the first template token);
- a family's own sub-classes already on the map (ChatTS's value prefixes, ...), unchanged;
- ``task``: tokens whose characters overlap the task's own text (what the task's ``doc_to_text``
  produced, the request context), located in the prompt string through the tokenizer's offsets;
- ``template``: every other text token (chat template, system prompt, role tags, separators).

The prompt string is the one the family handed to its processor, before placeholders were
expanded. Its tokens, placeholders left out, are matched to the text positions of the expanded
sequence (an exact match for every family; ``difflib`` keeps the matched runs if a processor
tokenizes differently, unmatched tokens count as template). A task text that does not occur in
the prompt gives an empty ``task`` part, so the content variant is undefined (None), never wrong.
"""

from __future__ import annotations

import difflib
import logging
from typing import Sequence

import torch

from lmms_textdom.core.modality import PAD, PositionClasses

SINK, TEMPLATE, TASK = "sink", "template", "task"
PARTS = (SINK, TEMPLATE, TASK)
logger = logging.getLogger(__name__)


def token_offsets(tokenizer, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    """(ids, character spans) of ``text`` as the tokenizer encodes it with its special tokens.

    Fast tokenizers give the spans directly; others (e.g. tiktoken-based) by decoding growing prefixes.
    """
    try:
        enc = tokenizer(text, return_offsets_mapping=True)
        return list(enc["input_ids"]), [tuple(span) for span in enc["offset_mapping"]]
    except (NotImplementedError, TypeError, KeyError, ValueError):
        pass
    # without added special tokens (a BOS is in no span anyway; the matching leaves it out)
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    spans, end = [], 0
    for i in range(len(ids)):
        decoded = tokenizer.decode(ids[: i + 1])
        start = end
        end = len(decoded) if text.startswith(decoded) else end  # a split character waits for its last byte
        spans.append((start, end))
    return ids, spans


def locate(prompt: str, pieces: Sequence[str]) -> list[tuple[int, int]]:
    """Character spans of the task text's pieces, in order, in ``prompt`` ([] if one is missing)."""
    spans, cursor = [], 0
    for piece in pieces:
        piece = piece.strip()
        if not piece:
            continue
        at = prompt.find(piece, cursor)
        if at < 0:
            return []
        spans.append((at, at + len(piece)))
        cursor = at + len(piece)
    return spans


def _task_tokens(tokenizer, prompt: str, pieces: Sequence[str], skip: set[int], text_ids: list[int]) -> list[bool]:
    """Per text position (in order): does it overlap the task text?"""
    spans = locate(prompt, pieces)
    if not spans:
        return [False] * len(text_ids)
    ids, offsets = token_offsets(tokenizer, prompt)
    kept = [(t, span) for t, span in zip(ids, offsets) if t not in skip]
    in_task = [any(a < hi and b > lo for lo, hi in spans) for _, (a, b) in kept]
    kept_ids = [t for t, _ in kept]
    if kept_ids == text_ids:  # every family so far
        return in_task
    out = [False] * len(text_ids)
    matcher = difflib.SequenceMatcher(None, kept_ids, text_ids, autojunk=False)
    matched = 0
    for block in matcher.get_matching_blocks():
        out[block.b : block.b + block.size] = in_task[block.a : block.a + block.size]
        matched += block.size
    if matched != len(text_ids) or matched != len(kept):
        logger.warning("text parts: %d of %d text tokens matched the prompt's own tokenization", matched, len(text_ids))
    return out


def with_text_parts(
    classes: PositionClasses,
    input_ids: torch.Tensor,
    prompts: Sequence[str],
    task_texts: Sequence[str | Sequence[str]],
    tokenizer,
    dropped_tokens: Sequence[int] = (),
) -> PositionClasses:
    """``classes`` plus the sink / template / task sub-classes (see the module docstring).

    input_ids (batch, seq): the expanded sequence ``classes`` describes; prompts[b]: the string the
    processor expanded; task_texts[b]: the task's text, or its pieces in order where the family
    cut it (e.g. around placeholders it replaced); dropped_tokens: token ids of the prompt that the
    sequence leaves out (besides the placeholders, which are found from the map).
    """
    taken = [name for name in PARTS if name in classes.subclasses]
    if taken:
        raise ValueError(f"the class map already has sub-classes named {taken}")
    if len(prompts) != classes.batch_size or len(task_texts) != classes.batch_size:
        raise ValueError(f"need one prompt and one task text per sequence ({classes.batch_size})")
    ids = classes.ids.cpu()
    input_ids = input_ids.cpu()
    text = ids == 0
    family = torch.zeros_like(text)
    for mask in classes.subclasses.values():
        family |= mask.cpu()
    sink = torch.zeros_like(text)
    task = torch.zeros_like(text)
    for b, (prompt, pieces) in enumerate(zip(prompts, task_texts)):
        real = (ids[b] != PAD).nonzero().flatten()
        if len(real) and bool(text[b, real[0]]):
            sink[b, real[0]] = True
        positions = text[b].nonzero().flatten()
        placeholders = set(input_ids[b][(ids[b] != 0) & (ids[b] != PAD)].tolist()) | set(dropped_tokens)
        pieces = [pieces] if isinstance(pieces, str) else list(pieces)
        flags = _task_tokens(tokenizer, prompt, pieces, placeholders, input_ids[b, positions].tolist())
        task[b, positions] = torch.tensor(flags, dtype=torch.bool)
    task &= ~sink & ~family
    template = text & ~sink & ~family & ~task
    parts = {SINK: sink, TEMPLATE: template, TASK: task}
    return classes.with_subclasses({**classes.subclasses, **parts})
