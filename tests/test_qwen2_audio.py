"""qwen2_audio_textdom on a tiny Qwen2-Audio: audio positions, the probe against eager attention, replication."""

from __future__ import annotations

import json

import pytest
import torch

from lmms_textdom.core.errors import UsageError
from lmms_textdom.models.base import Request
from lmms_textdom.models.qwen2_audio.adapter import Qwen2AudioTextdom
from lmms_textdom.core.probe import language_model_layers
from tests.conftest import audio_item
from tests.test_probe import NEW_TOKENS, assert_matches_eager

PROMPT = "Recognize the emotion with keywords in English:"
CLIP = "<|audio_bos|><|AUDIO|><|audio_eos|>"


def adapter_for(checkpoint, **model_args) -> Qwen2AudioTextdom:
    return Qwen2AudioTextdom(pretrained=str(checkpoint), device="cpu", **model_args)


@pytest.fixture(scope="module")
def adapter(tiny_qwen2_audio_dir):
    return adapter_for(tiny_qwen2_audio_dir)


@pytest.fixture(scope="module")
def requests_two():
    """1.0 s at 16 kHz (25 audio tokens) and 1.4 s at 8 kHz (35 tokens once resampled), different prompts."""
    return [
        Request(PROMPT, [audio_item(1, 1.0)], {}, {"max_new_tokens": NEW_TOKENS}),
        Request("describe the audio and the emotion", [audio_item(2, 1.4, rate=8000)], {}, {"max_new_tokens": NEW_TOKENS}),
    ]


def test_audio_positions_come_from_the_audio_token(adapter, requests_two):
    prepared = adapter.prepare(requests_two)
    ids, classes = prepared.inputs["input_ids"], prepared.classes
    assert classes.names == ("text", "audio")
    assert torch.equal(classes.ids == 1, ids == adapter.model.config.audio_token_index)
    assert [c[1] for c in classes.counts()] == [25, 35]
    mask = prepared.inputs["attention_mask"]
    assert (mask == 0).any() and bool(mask[:, -1].all()), "a left-padded batch"


def test_probe_measures_the_language_model_only(adapter):
    model = adapter.model
    assert model.get_decoder() is model.model.language_model
    layers = language_model_layers(model)
    assert sorted(layers.values()) == list(range(model.config.text_config.num_hidden_layers))
    assert not any(m in layers for m in model.model.audio_tower.modules())
    assert model.config.text_config._attn_implementation == "textdom_sdpa"
    assert model.config.audio_config._attn_implementation == "sdpa"


def test_probe_matches_eager_on_a_padded_audio_batch(adapter, requests_two):
    prepared = adapter.prepare(requests_two)
    stats, _ = assert_matches_eager(adapter.model, dict(prepared.inputs), prepared.classes, adapter.tokenizer.pad_token_id)
    assert [s.counts[1] for s in stats] == [25, 35]


def test_edit_path_with_one_copy_equals_the_stock_path(adapter, requests_two):
    prepared = adapter.prepare(requests_two)
    edited = adapter.edited_inputs(prepared.inputs, prepared.classes)  # nontext_repeat=1 keeps every position
    assert torch.equal(edited.classes.ids, prepared.classes.ids)
    model = adapter.model
    with torch.inference_mode():
        stock_logits = model(**prepared.inputs).logits
        edited_logits = model(**edited.inputs).logits
        stock = model.generate(**prepared.inputs, max_new_tokens=NEW_TOKENS, do_sample=False)
        ours = model.generate(**edited.inputs, max_new_tokens=NEW_TOKENS, do_sample=False)
    torch.testing.assert_close(edited_logits, stock_logits, atol=1e-5, rtol=1e-5)
    assert torch.equal(stock[:, prepared.inputs["input_ids"].shape[1] :], ours)


@pytest.fixture(scope="module")
def plain(adapter, requests_two):
    return [json.loads(payload) for _, payload in adapter._run_batch(requests_two)]


@pytest.mark.parametrize("repeat", [5, 10])
def test_replication_multiplies_audio_counts_and_keeps_text(tiny_qwen2_audio_dir, plain, requests_two, repeat):
    repeated_adapter = adapter_for(tiny_qwen2_audio_dir, nontext_repeat=repeat)
    repeated = [json.loads(payload) for _, payload in repeated_adapter._run_batch(requests_two)]
    for p, r, audio_tokens in zip(plain, repeated, (25, 35)):
        assert r["stats"]["counts"] == [p["stats"]["counts"][0], repeat * audio_tokens]
        settings = r["settings"]
        assert (settings["nontext_repeat"], settings["nontext_original"], settings["nontext_kept"]) == (repeat, audio_tokens, audio_tokens)
    assert "nontext_original" not in plain[0]["settings"]  # nothing edited, nothing to record


def test_probe_matches_eager_on_replicated_audio(tiny_qwen2_audio_dir, requests_two):
    repeated = adapter_for(tiny_qwen2_audio_dir, nontext_repeat=5)
    prepared = repeated.prepare(requests_two)
    assert "inputs_embeds" in prepared.inputs and "input_ids" not in prepared.inputs
    stats, _ = assert_matches_eager(repeated.model, dict(prepared.inputs), prepared.classes, repeated.tokenizer.pad_token_id)
    assert [s.counts[1] for s in stats] == [125, 175]


def test_prompt_formats(tiny_qwen2_audio_dir, adapter):
    chat = adapter.prompt(PROMPT, 1)
    assert f"Audio 1: {CLIP}\n{PROMPT}<|im_end|>" in chat and chat.endswith("<|im_start|>assistant\n")
    raw = adapter_for(tiny_qwen2_audio_dir, prompt_format="raw")
    assert raw.prompt(PROMPT, 1) == CLIP + PROMPT  # Qwen2-Audio's own evaluation prompt
    assert raw.prompt(PROMPT, 2) == CLIP + CLIP + PROMPT
    (text, payload), = raw._run_batch([Request(PROMPT, [audio_item(3, 1.0)], {}, {"max_new_tokens": 2})])
    assert json.loads(payload)["settings"]["prompt_format"] == "raw"


def test_a_chat_template_that_drops_the_audio_names_the_fix(tiny_qwen2_audio_dir):
    adapter = adapter_for(tiny_qwen2_audio_dir)
    adapter.processor.chat_template = "{% for m in messages %}{{ m['content'][-1]['text'] }}{% endfor %}"
    with pytest.raises(UsageError, match="chat template wrote 0 <\\|AUDIO\\|> placeholders for 1 clips; pass prompt_format=raw"):
        adapter.prepare([Request(PROMPT, [audio_item(4, 0.6)], {}, {})])


def test_pruning_is_not_an_audio_model_arg(tmp_path):
    with pytest.raises(UsageError, match=r"unknown model_args prune_ratio. Valid model_args:\n(.|\n)*nontext_repeat=1(.|\n)*prompt_format=chat"):
        adapter_for(tmp_path / "never-loaded", prune_ratio=0.5)


@pytest.mark.parametrize(
    "args,message",
    [
        ({"prompt_format": "plain"}, "prompt_format='plain' is invalid; accepted: chat, raw"),
        ({"nontext_repeat": 0}, "nontext_repeat=0 is invalid; it must be an integer k >= 1"),
    ],
)
def test_bad_values_fail_at_construction(tmp_path, args, message):
    with pytest.raises(UsageError, match=message):
        adapter_for(tmp_path / "never-loaded", **args)


def test_other_checkpoints_are_refused(tiny_llava_dir):
    with pytest.raises(UsageError, match="loads Qwen2-Audio checkpoints \\(model_type 'qwen2_audio'\\); .* model_type 'llava'"):
        adapter_for(tiny_llava_dir)


def test_images_are_refused_with_a_clear_message(adapter):
    from tests.conftest import random_image

    with pytest.raises(UsageError, match="expected audio as a \\{'array', 'sampling_rate'\\} item"):
        adapter.prepare([Request(PROMPT, [random_image(1)], {}, {})])


def samples(count: int, seed: int = 3) -> dict:
    """A clip of exactly ``count`` samples at 16 kHz."""
    return {"array": audio_item(seed, 1.0)["array"][:count], "sampling_rate": 16000}


def test_the_shortest_clip_is_one_audio_token_measured_alone_as_in_a_batch(tiny_qwen2_audio_dir):
    # 321 samples: 3 mel frames, one audio token. transformers' forward mistakes a prompt without two
    # adjacent <|AUDIO|> for an unexpanded one; alone, such a clip goes through the features path
    from tests.adapter_runs import assert_batch_equals_single, run_adapter

    shortest = Request(PROMPT, [samples(321)], {}, {"max_new_tokens": NEW_TOKENS})
    longer = Request(PROMPT, [audio_item(1, 1.0)], {}, {"max_new_tokens": NEW_TOKENS})
    assert_batch_equals_single(Qwen2AudioTextdom, tiny_qwen2_audio_dir, [shortest, longer])
    _, [(_, payload)] = run_adapter(Qwen2AudioTextdom, tiny_qwen2_audio_dir, [shortest])
    assert payload["stats"]["counts"][1] == 1
    assert payload["settings"]["audio_tokens"] == [1] and payload["settings"]["audio_seconds"] == [321 / 16000]


def test_a_clip_too_short_for_one_token_names_the_shortest(adapter):
    with pytest.raises(UsageError, match="an audio clip of 320 samples at 16000 Hz gives Qwen2-Audio no audio token; it needs at least 321"):
        adapter.prepare([Request(PROMPT, [samples(320)], {}, {})])
