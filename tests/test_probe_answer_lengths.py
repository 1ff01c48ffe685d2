"""Property: the probe equals eager attention for every answer length, on every path, whatever the flush size.

The deferred path scores its stashed rows every ``FLUSH_STEPS`` steps and once more at the end, so
the last pass can hold any number of rows from 1 to ``FLUSH_STEPS`` (an answer of 33 tokens once
crashed on a last pass of one row). Hypothesis draws the answer length (1-100), the batch (one
prompt, or two left-padded prompts of different lengths), the path (deferred with a dynamic or a
static cache, inline without a cache, mixed with sliding-window layers) and the flush size; the
explicit examples pin the boundaries of the default flush size so that CI always runs them.
"""

from __future__ import annotations

import functools
from unittest import mock

import numpy as np
import pytest
import torch
from hypothesis import example, given, settings, strategies as st
from transformers import Qwen2Config, Qwen2ForCausalLM

from lmms_textdom.core import probe as probe_module
from lmms_textdom.core.modality import PositionClasses
from lmms_textdom.core.probe import AttentionProbe
from lmms_textdom.tiny import build_llama
from lmms_textdom.tiny.common import instantiate, language_model_fields
from tests.oracle import eager_row_masses

LONGEST = 100
PROMPTS = ("the cat sat on the mat", "answer with the option letter from the given choices")
# path -> (model, generate kwargs, the probe's path name)
PATHS = {
    "dynamic": ("llama", {}, "deferred"),
    "static": ("llama", {"cache_implementation": "static"}, "deferred"),
    "no_cache": ("llama", {"use_cache": False}, "inline"),
    "sliding": ("qwen2", {}, "mixed"),
}
FLUSH_SIZES = (1, 2, 3, 5, probe_module.FLUSH_STEPS)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """A 2-layer model is all per-step overhead: on a shared CPU one thread runs it ~5x faster than two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@functools.cache
def tiny_model(name: str):
    """A 2-layer model that never stops early (no EOS), so every answer has the drawn length."""
    if name == "llama":
        model, tok = build_llama(num_layers=2)
    else:  # layer 0 keeps every key (deferred), layer 1 a window of 5 (inline)
        _, tok = build_llama(num_layers=2)
        config = Qwen2Config(**language_model_fields(tok, 2, 32, 4, 2, 0.2), use_sliding_window=True, sliding_window=5, max_window_layers=1)
        model = instantiate(Qwen2ForCausalLM, config, tok, seed=0, attn_implementation="sdpa")
    model.generation_config.eos_token_id = None
    tok.padding_side = "left"
    return model, tok


@functools.cache
def batch(name: str, padded: bool):
    """Inputs, their class map (positions 2..4 of each prompt are 'image'), and eager attention's
    per-row masses of the longest answer: (sequences, per sample (rows, layers, classes + 1))."""
    model, tok = tiny_model(name)
    inputs = tok(list(PROMPTS if padded else PROMPTS[:1]), return_tensors="pt", padding=True)
    mask = inputs["attention_mask"]
    ids = torch.where(mask == 0, -1, 0)
    ids[:, 2:5] = torch.where(mask[:, 2:5] == 1, 1, -1)
    classes = PositionClasses(("text", "image"), ids)
    sequences, rows = eager_row_masses(model, inputs, ids, 2, [LONGEST] * len(ids), LONGEST)
    return inputs, classes, sequences, rows


@settings(max_examples=30, deadline=None, derandomize=True, database=None)
@given(
    length=st.integers(1, LONGEST),
    padded=st.booleans(),
    path=st.sampled_from(sorted(PATHS)),
    flush=st.sampled_from(FLUSH_SIZES),
)
# Around the default flush size: one row, a full pass, a full pass and one row, ...
@example(length=1, padded=False, path="dynamic", flush=32)
@example(length=32, padded=False, path="static", flush=32)
@example(length=33, padded=False, path="dynamic", flush=32)
@example(length=33, padded=True, path="sliding", flush=32)
@example(length=64, padded=True, path="dynamic", flush=32)
@example(length=65, padded=False, path="sliding", flush=32)
@example(length=65, padded=True, path="static", flush=32)
@example(length=97, padded=False, path="no_cache", flush=32)
@example(length=97, padded=False, path="dynamic", flush=32)
@example(length=1, padded=True, path="no_cache", flush=1)
def test_probe_matches_eager_at_any_answer_length(length, padded, path, flush):
    name, generate_kwargs, probe_path = PATHS[path]
    model, _ = tiny_model(name)
    inputs, classes, sequences, rows = batch(name, padded)
    with mock.patch.object(probe_module, "FLUSH_STEPS", flush), AttentionProbe(model, classes) as probe:
        out = model.generate(**inputs, max_new_tokens=length, min_new_tokens=length, do_sample=False, **generate_kwargs)
    assert probe.path == probe_path, probe.inline_layers
    prompt_len = inputs["input_ids"].shape[1]
    assert out.shape[1] - prompt_len == length
    assert torch.equal(out, sequences[:, : prompt_len + length]), "eager and probed generation chose different tokens"
    for stats, expected in zip(probe.stats(), rows):
        assert stats.rows == length
        got = np.column_stack([stats.mass, stats.generated])
        # per output row (float32 rounding of the sums grows with the rows summed: ~1e-5 at 97 rows)
        np.testing.assert_allclose(got / length, expected[:length].sum(0) / length, atol=1e-5, rtol=0)
