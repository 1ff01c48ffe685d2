"""Teacher-forced probe (``answer_rows``): one forward pass over prompt + answer gives generate's rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from lmms_textdom.core import probe as probe_module
from lmms_textdom.core.forced import answer_tensor, forced_inputs
from lmms_textdom.core.modality import classify_tokens
from lmms_textdom.core.probe import AttentionProbe, ProbeError, output_lengths
from lmms_textdom.core.text_parts import with_text_parts
from lmms_textdom.tiny.common import instantiate, language_model_fields
from tests.oracle import eager_row_masses
from tests.test_probe import llama_padded_batch

NEW_TOKENS = 9


def generate_under_probe(model, inputs, classes, pad_id, cut=None, **kwargs):
    """(stats, answers) of a probed greedy generate; ``cut``: end some answers early (as if finished)."""
    with torch.inference_mode(), AttentionProbe(model, classes) as probe:
        out = model.generate(**inputs, max_new_tokens=NEW_TOKENS, do_sample=False, pad_token_id=pad_id, **kwargs)
    prompt_len = inputs["input_ids"].shape[1] if "input_ids" in inputs else 0
    new = out[:, prompt_len:]
    lengths = output_lengths(new, model.generation_config.eos_token_id, pad_id)
    if cut is not None:
        lengths = [min(n, c) for n, c in zip(lengths, cut)]
    return probe.stats(lengths), [new[b, :n].tolist() for b, n in enumerate(lengths)]


def forced_stats(model, inputs, classes, answers, pad_id):
    tokens = answer_tensor(answers, pad_id)
    with torch.inference_mode(), AttentionProbe(model, classes, answer_rows=tokens.shape[1]) as probe:
        model(**forced_inputs(model, inputs, tokens))
    assert probe.path == "teacher_forced"
    return probe.stats([len(a) for a in answers])


def assert_same_record(got, expected, rtol=1e-5):
    """Masses, counts, rows, text sub-classes and stepwise bins agree (float32 kernel rounding)."""
    assert got.rows == expected.rows and got.counts == expected.counts and got.heads == expected.heads
    atol = rtol * max(1.0, float(expected.mass.max()))
    np.testing.assert_allclose(got.mass, expected.mass, rtol=rtol, atol=atol)
    np.testing.assert_allclose(got.generated, expected.generated, rtol=rtol, atol=atol)
    assert got.subclass_counts == expected.subclass_counts
    for name, mass in expected.subclass_mass.items():
        np.testing.assert_allclose(got.subclass_mass[name], mass, rtol=rtol, atol=atol)
    assert (got.stepwise is None) == (expected.stepwise is None)
    if expected.stepwise is not None:
        assert got.stepwise.columns == expected.stepwise.columns
        np.testing.assert_array_equal(got.stepwise.rows, expected.stepwise.rows)
        np.testing.assert_allclose(got.stepwise.mass, expected.stepwise.mass, rtol=rtol, atol=atol)


def llava_classes(model, processor, inputs, texts, questions):
    classes = classify_tokens(inputs["input_ids"], {"image": model.config.image_token_id}, inputs["attention_mask"])
    return with_text_parts(classes, inputs["input_ids"], texts, questions, processor.tokenizer)


@pytest.fixture()
def llava_case(tiny_llava):
    from tests.conftest import llava_prompt, random_image

    model, processor = tiny_llava
    processor.tokenizer.padding_side = "left"
    questions = ["what is shown in the image ?", "answer with the option letter from the given choices directly . a b c d"]
    texts = [llava_prompt(processor, q) for q in questions]
    inputs = dict(processor(text=texts, images=[random_image(1), random_image(2)], return_tensors="pt", padding=True))
    return model, processor, inputs, llava_classes(model, processor, inputs, texts, questions)


def test_left_padded_llava_answers_of_different_lengths_equal_generate(llava_case):
    model, processor, inputs, classes = llava_case
    pad = processor.tokenizer.pad_token_id
    assert (inputs["attention_mask"] == 0).any(), "the batch must be left-padded"
    # The second answer ends early: its rows after the end must not leak into its record.
    expected, answers = generate_under_probe(model, inputs, classes, pad, cut=[NEW_TOKENS, 4])
    assert [len(a) for a in answers] == [NEW_TOKENS, 4] and expected[0].subclass_mass, "text parts must be recorded"
    for got, want in zip(forced_stats(model, inputs, classes, answers, pad), expected):
        assert_same_record(got, want)


def test_each_row_equals_eager_attention(tiny_llama):
    """Against the oracle, row by row: forced rows are eager's rows of generate (GQA, left padding)."""
    model, tok = tiny_llama
    inputs, classes = llama_padded_batch(tok)
    model.generation_config.eos_token_id = None
    _, answers = generate_under_probe(model, inputs, classes, tok.pad_token_id)
    tokens = answer_tensor(answers, tok.pad_token_id)
    with torch.inference_mode(), AttentionProbe(model, classes, answer_rows=tokens.shape[1]) as probe:
        model(**forced_inputs(model, inputs, tokens))
    rows = probe._recorder._rows.double().numpy()  # (answer rows, layers, batch, columns)
    sequences, expected = eager_row_masses(model, inputs, classes.ids, 2, [NEW_TOKENS] * 2, NEW_TOKENS)
    assert torch.equal(sequences[:, inputs["input_ids"].shape[1] :], tokens)
    for b, reference in enumerate(expected):
        np.testing.assert_allclose(rows[:, :, b, :3], reference, atol=1e-5, rtol=0)


def test_rows_scored_in_chunks_within_the_pass_budget(llava_case, monkeypatch):
    model, processor, inputs, classes = llava_case
    pad = processor.tokenizer.pad_token_id
    expected, answers = generate_under_probe(model, inputs, classes, pad)
    width = inputs["input_ids"].shape[1] + NEW_TOKENS - 1
    # room for 2 rows of one KV head's scores: 5 passes per layer for 9 rows
    budget = 4 * 2 * width * (8 + 2 * 2)
    monkeypatch.setattr(probe_module, "PASS_BUDGET_BYTES", budget)
    assert probe_module.forced_row_chunk(2, 4, 2, 8, width) == 2
    calls = []
    store = probe_module._Recorder._store
    monkeypatch.setattr(probe_module._Recorder, "_store", lambda self, start, *a, **k: calls.append(start) or store(self, start, *a, **k))
    for got, want in zip(forced_stats(model, inputs, classes, answers, pad), expected):
        assert_same_record(got, want)
    assert calls[:5] == [0, 2, 4, 6, 8]


def test_sliding_window_layers_equal_generate(tiny_llama):
    _, tok = tiny_llama
    config = Qwen2Config(**language_model_fields(tok, 4, 64, 8, 2, 0.2), use_sliding_window=True, sliding_window=5, max_window_layers=2)
    model = instantiate(Qwen2ForCausalLM, config, tok, seed=0, attn_implementation="sdpa")
    inputs, classes = llama_padded_batch(tok)
    expected, answers = generate_under_probe(model, inputs, classes, tok.pad_token_id)
    for got, want in zip(forced_stats(model, inputs, classes, answers, tok.pad_token_id), expected):
        assert_same_record(got, want)


def test_embeddings_prompt_equals_generate(tiny_llama):
    """A prompt given as inputs_embeds (edited sequences, ChatTS, GraphGPT): answers are embedded by the model."""
    model, tok = tiny_llama
    inputs, classes = llama_padded_batch(tok)
    embedded = {"inputs_embeds": model.get_input_embeddings()(inputs["input_ids"]).detach(), "attention_mask": inputs["attention_mask"]}
    expected, answers = generate_under_probe(model, embedded, classes, tok.pad_token_id)
    for got, want in zip(forced_stats(model, embedded, classes, answers, tok.pad_token_id), expected):
        assert_same_record(got, want)


def test_forward_of_the_wrong_length_is_named(llava_case):
    model, processor, inputs, classes = llava_case
    tokens = answer_tensor([[5, 6, 7], [5, 6, 7]], processor.tokenizer.pad_token_id)
    with pytest.raises(ProbeError, match="4 answer rows after the class map's .* prompt positions need"):
        with torch.inference_mode(), AttentionProbe(model, classes, answer_rows=4) as probe:
            model(**forced_inputs(model, inputs, tokens))
    with pytest.raises(ProbeError, match="this is a second one"):
        with torch.inference_mode(), AttentionProbe(model, classes, answer_rows=3) as probe:
            model(**forced_inputs(model, inputs, tokens))
            model(**forced_inputs(model, inputs, tokens))
    with pytest.raises(ValueError, match="at least one token"):
        answer_tensor([[5], []], 0)
    del probe


def test_flex_block_mask_rows_equal_the_dense_mask():
    from torch.nn.attention.flex_attention import create_block_mask
    from transformers.masking_utils import and_masks, causal_mask_function, padding_mask_function

    padding = torch.tensor([[0, 0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1]]).bool()
    mask_mod = and_masks(causal_mask_function, padding_mask_function(padding))
    block = create_block_mask(mask_mod, B=2, H=None, Q_LEN=7, KV_LEN=7, device="cpu", _compile=False)
    dense = torch.tril(torch.ones(7, 7, dtype=torch.bool))[None, None] & padding[:, None, None, :]
    for first, rows, width in ((3, 4, 7), (4, 2, 6)):
        want = probe_module._forced_bias(dense, first, rows, width, None, "cpu")
        torch.testing.assert_close(probe_module._forced_bias(block, first, rows, width, None, "cpu"), want)
        # no mask (sdpa without padding): causal limits; a flash 2-D padding mask adds the padding
        causal = probe_module._forced_bias(None, first, rows, width, None, "cpu")
        torch.testing.assert_close(causal, probe_module._forced_bias(dense[1:], first, rows, width, None, "cpu"))
        torch.testing.assert_close(probe_module._forced_bias(padding.long(), first, rows, width, None, "cpu"), want)
