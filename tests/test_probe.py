"""The attention probe against transformers' own eager attention on the same tiny models."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from transformers import AttentionInterface, LogitsProcessor, LogitsProcessorList, Qwen2Config, Qwen2ForCausalLM
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

from lmms_textdom.core import probe as probe_module
from lmms_textdom.core.modality import PositionClasses, classify_tokens
from lmms_textdom.core.probe import AttentionProbe, ProbeError, install, output_lengths, text_attention_implementation
from lmms_textdom.tiny.common import instantiate, language_model_fields
from tests.oracle import eager_class_masses

NEW_TOKENS = 6


def probe_generate(model, inputs, classes, **kwargs):
    with AttentionProbe(model, classes) as probe:
        out = model.generate(**inputs, max_new_tokens=NEW_TOKENS, do_sample=False, **kwargs)
    return out, probe


def middle_is_image(inputs) -> PositionClasses:
    """Pretend the middle third of a single text prompt is image tokens."""
    length = inputs["input_ids"].shape[1]
    ids = torch.zeros(1, length, dtype=torch.long)
    ids[0, length // 3 : 2 * length // 3] = 1
    return PositionClasses(("text", "image"), ids)


def assert_matches_eager(model, inputs, classes, pad_token_id, path=None, **generate_kwargs):
    """``path``: the probe path expected (``deferred``, ``inline``, ``mixed``), None = not checked."""
    out, probe = probe_generate(model, inputs, classes, **generate_kwargs)
    assert path is None or probe.path == path, probe.inline_layers
    prompt_len = inputs["input_ids"].shape[1] if "input_ids" in inputs else 0  # no prompt ids from embeddings
    lengths = output_lengths(out[:, prompt_len:], model.generation_config.eos_token_id, pad_token_id)
    stats = probe.stats(lengths)
    sequences, expected = eager_class_masses(model, inputs, classes.ids, len(classes.names), lengths, NEW_TOKENS)
    assert torch.equal(sequences, out), "eager and probed generation chose different tokens"
    for s, ref in zip(stats, expected):
        got = np.column_stack([s.mass, s.generated])
        np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0)
    return stats, lengths


def test_llava_single_prompt_matches_eager(tiny_llava, llava_batch):
    model, processor = tiny_llava
    one = {k: v[1:] for k, v in llava_batch.items() if k != "pixel_values"} | {"pixel_values": llava_batch["pixel_values"][1:]}
    classes = classify_tokens(one["input_ids"], {"image": model.config.image_token_id}, one["attention_mask"])
    stats, lengths = assert_matches_eager(model, one, classes, processor.tokenizer.pad_token_id, path="deferred")
    assert stats[0].counts[1] == 25 and stats[0].rows == lengths[0] > 0
    # Every output row carries one unit of mass per head, spread over prompt and generated tokens.
    totals = stats[0].mass.sum(1) + stats[0].generated
    np.testing.assert_allclose(totals, stats[0].rows * stats[0].heads, rtol=1e-5)


def test_llava_left_padded_batch_matches_eager(tiny_llava, llava_batch):
    model, processor = tiny_llava
    assert (llava_batch["attention_mask"][0] == 0).any(), "fixture must contain left padding"
    classes = classify_tokens(llava_batch["input_ids"], {"image": model.config.image_token_id}, llava_batch["attention_mask"])
    stats, _ = assert_matches_eager(model, llava_batch, classes, processor.tokenizer.pad_token_id, path="deferred")
    pad = int((llava_batch["attention_mask"][0] == 0).sum())
    assert stats[0].counts[0] + stats[0].counts[1] == llava_batch["input_ids"].shape[1] - pad


def test_gqa_language_model_matches_eager(tiny_llama):
    model, tok = tiny_llama
    assert model.config.num_key_value_heads < model.config.num_attention_heads
    tok.padding_side = "left"
    inputs = tok(["the cat sat on the mat", "answer with the option letter from the given choices"], return_tensors="pt", padding=True)
    # Pretend positions 2..4 of each prompt are "image" tokens, to exercise a non-text class.
    ids = torch.where(inputs["attention_mask"] == 0, -1, 0)
    ids[:, 2:5] = torch.where(inputs["attention_mask"][:, 2:5] == 1, 1, -1)
    classes = PositionClasses(("text", "image"), ids)
    assert_matches_eager(model, inputs, classes, tok.pad_token_id)


def test_probe_wrapping_eager_matches_too(tiny_llava, llava_batch):
    model, processor = tiny_llava
    eager = copy.deepcopy(model)
    eager.set_attn_implementation("eager")
    classes = classify_tokens(llava_batch["input_ids"], {"image": model.config.image_token_id}, llava_batch["attention_mask"])
    out, probe = probe_generate(eager, llava_batch, classes)
    _, ref = probe_generate(model, llava_batch, classes)
    for a, b in zip(probe.stats(), ref.stats()):
        np.testing.assert_allclose(a.mass, b.mass, atol=1e-5)
    assert text_attention_implementation(eager) == "eager"


def test_tokens_identical_with_and_without_probe(tiny_llava, llava_batch):
    model, _ = tiny_llava
    plain = model.generate(**llava_batch, max_new_tokens=NEW_TOKENS, do_sample=False)
    classes = classify_tokens(llava_batch["input_ids"], {"image": model.config.image_token_id}, llava_batch["attention_mask"])
    probed, _ = probe_generate(model, llava_batch, classes)
    assert torch.equal(plain, probed)
    assert model.config.text_config._attn_implementation == "sdpa", "the probe must restore the implementation"
    assert model.config.vision_config._attn_implementation == "sdpa"


def test_vision_tower_is_not_probed(tiny_llava, llava_batch):
    model, _ = tiny_llava
    classes = classify_tokens(llava_batch["input_ids"], {"image": model.config.image_token_id}, llava_batch["attention_mask"])
    _, probe = probe_generate(model, llava_batch, classes)
    assert probe.steps == NEW_TOKENS
    assert probe.stats()[0].num_layers == model.config.text_config.num_hidden_layers


def test_bf16_model_accumulates_in_float32(tiny_llama):
    model, tok = tiny_llama
    half = copy.deepcopy(model).to(torch.bfloat16)
    inputs = tok(["the cat sat on the mat"], return_tensors="pt")
    _, probe = probe_generate(half, inputs, middle_is_image(inputs))
    (s,) = probe.stats()
    assert s.mass.dtype == np.float64
    np.testing.assert_allclose(s.mass.sum(1) + s.generated, s.rows * s.heads, rtol=1e-5)


def test_class_map_of_wrong_length_is_rejected(tiny_llava, llava_batch):
    model, _ = tiny_llava
    ids = torch.zeros(2, llava_batch["input_ids"].shape[1] - 3, dtype=torch.long)
    with pytest.raises(ProbeError, match=r"class map covers \d+ positions but the language model's prompt has \d+"):
        probe_generate(model, llava_batch, PositionClasses(("text", "image"), ids))


def test_class_map_of_wrong_batch_is_rejected(tiny_llava, llava_batch):
    model, _ = tiny_llava
    ids = torch.zeros(1, llava_batch["input_ids"].shape[1], dtype=torch.long)
    with pytest.raises(ProbeError, match="class map has 1 sequences but the model runs 2"):
        probe_generate(model, llava_batch, PositionClasses(("text", "image"), ids))


def test_unknown_class_is_rejected():
    with pytest.raises(ValueError, match="unknown position class 'imagez'"):
        classify_tokens(torch.tensor([[1, 2, 3]]), {"imagez": 3})
    with pytest.raises(ValueError, match=r"class ids must lie in \[-1, 1\]"):
        PositionClasses(("text", "image"), torch.tensor([[0, 2]]))


def test_layers_that_bypass_the_probe_are_named(tiny_llama):
    model, tok = tiny_llama
    broken = copy.deepcopy(model)
    install(broken)
    # Give layer 1 its own config that still says plain sdpa: its attention skips the probe.
    attn = broken.model.layers[1].self_attn
    attn.config = copy.deepcopy(attn.config)
    attn.config._attn_implementation = "sdpa"
    inputs = tok(["the cat sat on the mat"], return_tensors="pt")
    _, probe = probe_generate(broken, inputs, middle_is_image(inputs))
    with pytest.raises(ProbeError, match=r"layers \[1\] never passed through the probe"):
        probe.stats()


def test_unsupported_attention_implementation_is_named(tiny_llama):
    model, _ = tiny_llama
    other = copy.deepcopy(model)
    other.config._attn_implementation_internal = "not_registered_anywhere"
    with pytest.raises(ProbeError, match="not registered in transformers' AttentionInterface"):
        install(other)
    other.config._attn_implementation_internal = "paged|eager"
    with pytest.raises(ProbeError, match="does not measure paged attention"):
        install(other)


def llama_padded_batch(tok):
    tok.padding_side = "left"
    inputs = tok(["the cat sat on the mat", "answer with the option letter from the given choices"], return_tensors="pt", padding=True)
    ids = torch.where(inputs["attention_mask"] == 0, -1, 0)
    ids[:, 2:5] = torch.where(inputs["attention_mask"][:, 2:5] == 1, 1, -1)
    return inputs, PositionClasses(("text", "image"), ids)


def test_rows_scored_in_several_deferred_passes_match_eager(tiny_llava, llava_batch, monkeypatch):
    monkeypatch.setattr(probe_module, "FLUSH_STEPS", 2)  # 6 tokens: passes after steps 2, 4 and at the end
    model, processor = tiny_llava
    classes = classify_tokens(llava_batch["input_ids"], {"image": model.config.image_token_id}, llava_batch["attention_mask"])
    assert_matches_eager(model, llava_batch, classes, processor.tokenizer.pad_token_id, path="deferred")


def test_static_cache_is_deferred_and_matches_eager(tiny_llama):
    model, tok = tiny_llama
    inputs, classes = llama_padded_batch(tok)
    assert_matches_eager(model, inputs, classes, tok.pad_token_id, path="deferred", cache_implementation="static")


def test_no_cache_runs_inline_and_matches_eager(tiny_llama):
    model, tok = tiny_llama
    inputs, classes = llama_padded_batch(tok)
    assert_matches_eager(model, inputs, classes, tok.pad_token_id, path="inline", use_cache=False)


def test_sliding_window_layers_run_inline_the_others_deferred(tiny_llama):
    _, tok = tiny_llama
    # Layers 2 and 3 attend the last 5 positions only, far fewer than the prompt's.
    config = Qwen2Config(**language_model_fields(tok, 4, 64, 8, 2, 0.2), use_sliding_window=True, sliding_window=5, max_window_layers=2)
    model = instantiate(Qwen2ForCausalLM, config, tok, seed=0, attn_implementation="sdpa")
    inputs, classes = llama_padded_batch(tok)
    _, probe = probe_generate(model, inputs, classes)
    assert probe.inline_layers == {2: "sliding-window attention", 3: "sliding-window attention"}
    assert_matches_eager(model, inputs, classes, tok.pad_token_id, path="mixed")


def counting_sdpa(module, *args, **kwargs):
    counting_sdpa.calls += 1
    return sdpa_attention_forward(module, *args, **kwargs)


def test_any_registered_attention_function_runs_inside_the_probe(tiny_llama):
    AttentionInterface.register("counting_sdpa", counting_sdpa)
    AttentionMaskInterface.register("counting_sdpa", sdpa_mask)
    model, tok = tiny_llama
    custom = copy.deepcopy(model)
    custom.set_attn_implementation("counting_sdpa")
    inputs, classes = llama_padded_batch(tok)
    plain = model.generate(**inputs, max_new_tokens=NEW_TOKENS, do_sample=False)
    counting_sdpa.calls = 0
    out, _ = probe_generate(custom, inputs, classes)
    assert counting_sdpa.calls == NEW_TOKENS * model.config.num_hidden_layers, "the model's own function must compute the output"
    assert torch.equal(out, plain)
    assert_matches_eager(custom, inputs, classes, tok.pad_token_id, path="deferred")
    assert text_attention_implementation(custom) == "counting_sdpa"


class ForceTokenAt(LogitsProcessor):
    """Greedy decoding that must emit ``token`` as the answer's ``index``-th token and never ``banned``."""

    def __init__(self, prompt_len: int, index: int, token: int, banned: int):
        self.prompt_len, self.index, self.token, self.banned = prompt_len, index, token, banned

    def __call__(self, input_ids, scores):
        scores[:, self.banned] = float("-inf")
        if input_ids.shape[1] - self.prompt_len == self.index:
            scores[:, :] = float("-inf")
            scores[:, self.token] = 0.0
        return scores


def test_pad_token_generated_mid_answer_keeps_its_rows(tiny_llama):
    model, tok = tiny_llama
    inputs = tok(["the cat sat on the mat"], return_tensors="pt")
    prompt_len = inputs["input_ids"].shape[1]
    force = ForceTokenAt(prompt_len, index=1, token=tok.pad_token_id, banned=tok.eos_token_id)
    out, probe = probe_generate(model, inputs, middle_is_image(inputs), logits_processor=LogitsProcessorList([force]))
    new = out[:, prompt_len:]
    assert new[0, 1] == tok.pad_token_id and new.shape[1] == NEW_TOKENS, "batch of one, no padding: the pad was generated"
    lengths = output_lengths(new, model.generation_config.eos_token_id, tok.pad_token_id)
    assert lengths == [NEW_TOKENS]  # the old rule stopped at the pad: 1 row
    (s,) = probe.stats(lengths)
    assert s.rows == NEW_TOKENS
    np.testing.assert_allclose(s.mass.sum(1) + s.generated, NEW_TOKENS * s.heads, rtol=1e-5)
    after_pad = tok.decode(new[0, 2:], skip_special_tokens=True)
    assert after_pad and tok.decode(new[0], skip_special_tokens=True).endswith(after_pad), "the answer keeps the tokens after the pad"


def test_output_lengths_exclude_only_the_padding_of_finished_sequences():
    generated = torch.tensor([[5, 6, 2, 0, 0], [5, 6, 7, 8, 9], [5, 0, 0, 0, 0], [2, 0, 0, 0, 0], [5, 0, 6, 0, 7]])
    # EOS rows count; a sequence without EOS never finished, so its pad tokens were generated.
    assert output_lengths(generated, eos_token_id=2, pad_token_id=0) == [3, 5, 5, 1, 5]
    assert output_lengths(generated, eos_token_id=[7, 2], pad_token_id=None) == [3, 3, 5, 1, 5]


def test_output_lengths_find_where_stop_strings_ended_a_sequence(tiny_llama):
    _, tok = tiny_llama
    pad = tok.pad_token_id
    sat, on, the, mat = tok.convert_tokens_to_ids(["Ġsat", "Ġon", "Ġthe", "Ġmat"])
    generated = torch.tensor([[sat, on, pad, pad], [sat, the, the, mat], [sat, pad, on, pad]])
    # Row 0 stopped at " on" (then filler); row 1 ran to the end; row 2 generated a pad, then stopped.
    assert output_lengths(generated, tok.eos_token_id, pad, stop_strings=["on"], tokenizer=tok) == [2, 4, 3]
    assert output_lengths(generated, tok.eos_token_id, pad) == [4, 4, 4]
    # A stop string completed across the prompt's end: " sat" after a prompt ending in "the c at".
    generated = torch.tensor([[sat, pad, pad, pad], [the, mat, on, the]])
    prompt = torch.tensor([tok.convert_tokens_to_ids(["the", "Ġc", "at"])] * 2)
    assert output_lengths(generated, tok.eos_token_id, pad, stop_strings=["at sat"], tokenizer=tok, prompt=prompt) == [1, 4]
    assert output_lengths(generated, tok.eos_token_id, pad, stop_strings=["at sat"], tokenizer=tok) == [4, 4]
    with pytest.raises(ValueError, match="needs the tokenizer"):
        output_lengths(generated, tok.eos_token_id, pad, stop_strings=["on"])


def test_flex_attention_block_mask_gives_its_last_row():
    from torch.nn.attention.flex_attention import create_block_mask
    from transformers.masking_utils import add_offsets_to_mask_function, and_masks, causal_mask_function, padding_mask_function

    padding = torch.tensor([[0, 0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1]]).bool()
    mask_mod = and_masks(causal_mask_function, padding_mask_function(padding))
    prefill = create_block_mask(mask_mod, B=2, H=None, Q_LEN=6, KV_LEN=6, device="cpu", _compile=False)
    assert torch.equal(probe_module._last_row(prefill, 6, 2, 6), padding[:, None, None, :6])
    # A decoding step: one query at position 6 over 7 keys, as transformers offsets it.
    step = create_block_mask(add_offsets_to_mask_function(mask_mod, 6, 0), B=2, H=None, Q_LEN=1, KV_LEN=7, device="cpu", _compile=False)
    assert torch.equal(probe_module._last_row(step, 1, 2, 7), padding[:, None, None, :])


@pytest.mark.parametrize("new_tokens", [1, 2, 32, 33, 34, 65])
def test_answer_of_any_length_at_batch_one_matches_eager(new_tokens):
    """A last deferred pass of a single row (answers of 1, 33, 65 ... tokens) once built a bias of 0 columns."""
    from lmms_textdom.tiny import build_llama
    from tests.oracle import eager_row_masses

    model, tok = build_llama(num_layers=2)
    model.generation_config.eos_token_id = None  # every answer runs to its full length
    inputs = tok(["the cat sat on the mat"], return_tensors="pt")
    classes = middle_is_image(inputs)
    with AttentionProbe(model, classes) as probe:
        out = model.generate(**inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False)
    assert probe.path == "deferred"
    (stats,) = probe.stats()
    assert stats.rows == new_tokens == out.shape[1] - inputs["input_ids"].shape[1]
    sequences, (rows,) = eager_row_masses(model, inputs, classes.ids, 2, [new_tokens], new_tokens)
    assert torch.equal(sequences, out)
    np.testing.assert_allclose(np.column_stack([stats.mass, stats.generated]), rows.sum(0), atol=1e-5, rtol=0)


def test_passes_scored_in_blocks_of_heads_and_rows_match_eager(tiny_llama, monkeypatch):
    """A long prompt's pass goes in blocks that fit a CPU's caches: here a block of one KV head and one row."""
    monkeypatch.setattr(probe_module, "CPU_BLOCK_BYTES", 1)
    model, tok = tiny_llama
    inputs, classes = llama_padded_batch(tok)
    assert_matches_eager(model, inputs, classes, tok.pad_token_id, path="deferred")
