"""ChatTS inputs: value encoding, the value-statistics prefix, the chat format, and the merged sequence.

A question holds one ``<ts><ts/>`` per series. Each series is centred and, when any centred value
reaches 3 in magnitude, scaled so that the largest reaches 3; the encoder sees the result rounded to
float16, as ChatTS's processor hands it over. Before each ``<ts><ts/>`` the release's prefix states
the offset and scale as text (0801 adds length, max, min and the first and last raw value). In the
language model's sequence both marker tokens are replaced by the series' ``ceil(L / patch_size)``
encoder outputs, right after the prefix; everything else is text.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from lmms_textdom.core.errors import UsageError
from lmms_textdom.core.modality import PositionClasses
from lmms_textdom.editing.sequence import left_pad_stack

PLACEHOLDER = "<ts><ts/>"
START, END = "<ts>", "<ts/>"
SYSTEM = "You are a helpful assistant."
TIME_SERIES = "time_series"
#: the text subclass of the value-statistics prefixes (numbers written as text)
VALUE_PREFIX = "ts_value_prefix"


HEADER = f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n"


def chat_prompt(question: str) -> str:
    """ChatTS's chat format (Qwen2.5's, with the default system prompt), ready for the answer."""
    return f"{HEADER}{question}<|im_end|>\n<|im_start|>assistant\n"


def check_series(series, number: int) -> np.ndarray:
    """One series as a float64 vector, or a UsageError saying what is wrong with it."""
    try:
        values = np.asarray(series, dtype=np.float64)
    except (TypeError, ValueError):
        raise UsageError(f"time series {number} is not a list of numbers") from None
    if values.ndim != 1:
        raise UsageError(f"time series {number} must be one list of numbers (a univariate series), got shape {values.shape}")
    if values.size == 0:
        raise UsageError(f"time series {number} is empty; every <ts><ts/> needs at least one value")
    if not np.all(np.isfinite(values)):
        bad = int(np.flatnonzero(~np.isfinite(values))[0])
        raise UsageError(f"time series {number} has a non-finite value ({values[bad]}) at index {bad}; fill or drop missing values first")
    return values


def encode_series(values: np.ndarray, release: str) -> tuple[torch.Tensor, str]:
    """(encoder input of shape (L,), prefix text) for one series, as ChatTS's ``sp_encoding`` defines them."""
    mean = float(np.mean(values))
    centred = values - mean
    scale = 1.0
    if np.any(np.abs(centred) >= 3.0):
        scale = float(np.max(np.abs(centred))) / 3.0
        centred = centred / scale
    if release == "0801":
        prefix = (
            f"[offset={-mean:.4f}|scaling={scale:.4f}|length={len(values)}|max={values.max():.4f}"
            f"|min={values.min():.4f}|left={values[0]:.4f}|right={values[-1]:.4f}]"
        )
    else:
        prefix = f"[Value Offset: {-mean:.4f}|Value Scaling: {scale:.4f}]"
    return torch.from_numpy(centred).to(torch.float16), prefix


def marker_ids(tokenizer) -> tuple[int, int]:
    """Token ids of ``<ts>`` and ``<ts/>``, looked up by their strings (config indices were once swapped)."""
    ids = []
    for token in (START, END):
        encoded = tokenizer.encode(token, add_special_tokens=False)
        if len(encoded) != 1 or encoded[0] == tokenizer.unk_token_id:
            raise UsageError(f"the checkpoint's tokenizer has no single {token} token; this is not a ChatTS checkpoint")
        ids.append(encoded[0])
    return ids[0], ids[1]


@dataclass
class SampleLayout:
    """The merged sequence of one sample before padding."""

    token_ids: list[int]  # text token ids; time-series slots hold the <ts> id (overwritten by features)
    is_series: list[bool]
    in_prefix: list[bool]
    patch_counts: list[int]
    prompt: str = ""  # the chat prompt these tokens come from (value prefixes written in)


def lay_out(question: str, series: Sequence, release: str, tokenizer, patch_size: int, max_length: int | None):
    """(layout, encoded series) of one request; checks placeholders against series first."""
    pieces = question.split(PLACEHOLDER)
    if len(pieces) - 1 != len(series):
        raise UsageError(
            f"the prompt has {len(pieces) - 1} {PLACEHOLDER} placeholders but {len(series)} time series were given; "
            f"write one {PLACEHOLDER} per series, in order"
        )
    encoded, text, prefix_spans = [], pieces[0], []
    for number, (raw, after) in enumerate(zip(series, pieces[1:]), start=1):
        values = check_series(raw, number)
        if max_length is not None and values.size > max_length:
            raise UsageError(f"time series {number} has {values.size} values; this checkpoint takes at most {max_length}")
        tensor, prefix = encode_series(values, release)
        encoded.append(tensor)
        prefix_spans.append((len(text), len(text) + len(prefix)))
        text += prefix + PLACEHOLDER + after
    prompt = chat_prompt(text)
    prefix_spans = [(a + len(HEADER), b + len(HEADER)) for a, b in prefix_spans]
    enc = tokenizer(prompt, return_offsets_mapping=True)
    start_id, end_id = marker_ids(tokenizer)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    starts = [i for i, t in enumerate(ids) if t == start_id]
    if len(starts) != len(series) or any(i + 1 >= len(ids) or ids[i + 1] != end_id for i in starts) or ids.count(end_id) != len(series):
        raise UsageError(f"the prompt must hold {START} and {END} only as {PLACEHOLDER} pairs, one per series")
    layout = SampleLayout([], [], [], [], prompt)
    cursor = 0
    for start, values in zip([*starts, len(ids)], [*encoded, None]):
        for i in range(cursor, start):
            a, b = offsets[i]
            layout.token_ids.append(ids[i])
            layout.is_series.append(False)
            layout.in_prefix.append(any(a < hi and b > lo for lo, hi in prefix_spans))
        if values is None:
            break
        count = math.ceil(values.shape[0] / patch_size)
        layout.token_ids += [start_id] * count
        layout.is_series += [True] * count
        layout.in_prefix += [False] * count
        layout.patch_counts.append(count)
        cursor = start + 2
    return layout, encoded


def batch_tensors(layouts: Sequence[SampleLayout], pad_id: int) -> tuple[torch.Tensor, torch.Tensor, PositionClasses]:
    """(token ids, attention mask, classes with the prefix subclass) of a left-padded batch."""
    ids = left_pad_stack([torch.tensor(l.token_ids) for l in layouts], pad_id)
    mask = left_pad_stack([torch.ones(len(l.token_ids), dtype=torch.long) for l in layouts], 0)
    class_ids = left_pad_stack([torch.tensor(l.is_series, dtype=torch.long) for l in layouts], -1)
    prefix = left_pad_stack([torch.tensor(l.in_prefix) for l in layouts], False)
    return ids, mask, PositionClasses(("text", TIME_SERIES), class_ids, {VALUE_PREFIX: prefix})
