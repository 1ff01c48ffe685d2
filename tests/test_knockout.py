"""Layer knock-outs (model_arg knockout_layers): the mask edit, what the probe sees, and bad ranges."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from lmms_textdom.analysis.knockout import KnockOut
from lmms_textdom.analysis.layers import format_layers, parse_layers
from lmms_textdom.core.errors import UsageError
from lmms_textdom.core.modality import PositionClasses, classify_tokens
from lmms_textdom.core.probe import MASK_EDIT, AttentionProbe, language_model_layers, output_lengths
from lmms_textdom.models.base import Request
from lmms_textdom.models.llava.adapter import LlavaHfTextdom
from tests.adapter_runs import run_adapter
from tests.conftest import random_image

NEW_TOKENS = 5


def generate(model, inputs, classes, layers=None, probe=True):
    """Greedy tokens, logits and (with ``probe``) per-sample stats, under a knock-out of ``layers``."""
    with torch.no_grad(), KnockOut(model, layers or (), classes):
        if not probe:
            out = model.generate(**inputs, max_new_tokens=NEW_TOKENS, do_sample=False, output_logits=True, return_dict_in_generate=True)
            return out, None
        with AttentionProbe(model, classes) as p:
            out = model.generate(**inputs, max_new_tokens=NEW_TOKENS, do_sample=False, output_logits=True, return_dict_in_generate=True)
    prompt_len = inputs["input_ids"].shape[1]
    return out, p.stats(output_lengths(out.sequences[:, prompt_len:], model.generation_config.eos_token_id, 0))


def image_classes(model, batch):
    return classify_tokens(batch["input_ids"], {"image": model.config.image_token_id}, batch["attention_mask"])


# ----- layer specifications ---------------------------------------------------------------------------


def test_layer_ranges_parse_and_print_back():
    assert parse_layers("0-3+16+28-31", 32) == {0, 1, 2, 3, 16, 28, 29, 30, 31}
    assert parse_layers("all", 4) == {0, 1, 2, 3}
    assert parse_layers("none", 4) == parse_layers(None, 4) == frozenset()
    assert parse_layers(16, 32) == {16}  # lmms-eval hands a lone number over as an int
    assert parse_layers("[0-1, 5]", 8) == {0, 1, 5}  # quoted or bracketed lists with commas
    assert format_layers(parse_layers("28-31+0-3+16+2", 32)) == "0-3+16+28-31"
    assert format_layers(()) is None


@pytest.mark.parametrize(
    "text,message",
    [
        ("0-4", r"'0-4' lies outside the language model, whose layers are 0-3"),
        ("7", r"'7' lies outside"),
        ("3-1", r"range '3-1' runs backwards"),
        ("1-", r"'1-' is not a layer or a range"),
        ("early", r"'early' is not a layer or a range"),
        ("-2", r"'-2' is not a layer or a range"),
        ("+", r"no layers in"),
    ],
)
def test_bad_layer_ranges_are_named(text, message):
    with pytest.raises(ValueError, match=message):
        parse_layers(text, 4)


def test_adapter_rejects_bad_ranges_before_loading_weights(tiny_llava_dir, tmp_path):
    with pytest.raises(UsageError, match=r"knockout_layers='2-9' is invalid: '2-9' lies outside the language model, whose layers are 0-3"):
        LlavaHfTextdom(pretrained=str(tiny_llava_dir), device="cpu", knockout_layers="2-9")
    # a malformed range fails at parsing, before the checkpoint is even looked for
    with pytest.raises(UsageError, match=r"knockout_layers='1--2' is invalid; it must be layer indices and ranges joined by '\+'"):
        LlavaHfTextdom(pretrained=str(tmp_path / "missing"), knockout_layers="1--2")
    for name in ("key_stats", "knockout_score"):
        with pytest.raises(UsageError, match=f"{name}=true .* needs textdom=true"):
            LlavaHfTextdom(pretrained=str(tiny_llava_dir), device="cpu", textdom=False, **{name: True})


# ----- the edit ---------------------------------------------------------------------------------------


def test_no_layer_is_token_identical_to_the_plain_run(tiny_llava, llava_batch):
    model, _ = tiny_llava
    classes = image_classes(model, llava_batch)
    with torch.no_grad():
        plain = model.generate(**llava_batch, max_new_tokens=NEW_TOKENS, do_sample=False, output_logits=True, return_dict_in_generate=True)
    knocked, _ = generate(model, llava_batch, classes, layers=(), probe=False)
    assert torch.equal(knocked.sequences, plain.sequences)
    for a, b in zip(knocked.logits, plain.logits):
        assert torch.equal(a, b)
    assert not any(hasattr(m, MASK_EDIT) for m in language_model_layers(model)), "the edit must be removed on exit"


def test_a_sample_without_nontext_is_unchanged_in_every_layer(tiny_llama):
    # every layer knocked out, but nothing to knock out: the only change is sdpa's causal fast path
    # becoming an explicit causal mask, which must give the same tokens.
    model, tok = tiny_llama
    inputs = tok(["the cat sat on the mat"], return_tensors="pt")
    classes = PositionClasses(("text", "image"), torch.zeros_like(inputs["input_ids"]))
    with torch.no_grad():
        plain = model.generate(**inputs, max_new_tokens=NEW_TOKENS, do_sample=False, output_logits=True, return_dict_in_generate=True)
    knocked, _ = generate(model, inputs, classes, layers=range(6), probe=False)
    assert torch.equal(knocked.sequences, plain.sequences)
    for a, b in zip(knocked.logits, plain.logits):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_knocked_layers_put_no_mass_on_nontext_and_others_keep_it(tiny_llava, llava_batch, implementation):
    model, _ = tiny_llava
    if implementation == "eager":
        model = copy.deepcopy(model)
        model.set_attn_implementation("eager")
    classes = image_classes(model, llava_batch)
    assert (llava_batch["attention_mask"][0] == 0).any(), "the batch must be left-padded"
    _, stats = generate(model, llava_batch, classes, layers={1, 2})
    for s in stats:
        assert s.rows > 0
        assert np.all(s.mass[[1, 2], 1] == 0.0), "knocked-out rows must not reach the image"
        assert np.all(s.mass[[0, 3], 1] > 0), "other layers keep their attention to the image"
        # the mass the image lost went to text and generated tokens: every row still sums to one per head
        np.testing.assert_allclose(s.mass.sum(1) + s.generated, s.rows * s.heads, rtol=1e-5)


def test_sdpa_and_eager_knock_out_alike(tiny_llava, llava_batch):
    model, _ = tiny_llava
    eager = copy.deepcopy(model)
    eager.set_attn_implementation("eager")
    classes = image_classes(model, llava_batch)
    out_sdpa, stats_sdpa = generate(model, llava_batch, classes, layers={0, 3})
    out_eager, stats_eager = generate(eager, llava_batch, classes, layers={0, 3})
    assert torch.equal(out_sdpa.sequences, out_eager.sequences)
    for a, b in zip(stats_sdpa, stats_eager):
        np.testing.assert_allclose(a.mass, b.mass, atol=1e-5)


def test_every_layer_knocked_out_equals_the_text_alone(tiny_llava, llava_batch):
    """All layers knocked out = the language model run on the text tokens alone, at their own positions."""
    model, _ = tiny_llava
    one = {k: v[1:] for k, v in llava_batch.items()}  # the unpadded prompt
    classes = image_classes(model, one)
    with torch.no_grad(), KnockOut(model, range(4), classes):
        full = model(**one).logits[0]
    ids = one["input_ids"][0]
    text = ids != model.config.image_token_id
    positions = torch.arange(len(ids))[text]
    assert positions.diff().max() > 1, "the text must have a gap where the image was"
    with torch.no_grad():
        embeds = model.get_input_embeddings()(ids[text])[None]
        hidden = model.model.language_model(inputs_embeds=embeds, position_ids=positions[None]).last_hidden_state
        alone = model.lm_head(hidden)[0]
    after = positions > torch.nonzero(~text).max()
    assert after.sum() > 3
    torch.testing.assert_close(full[text], alone, atol=1e-4, rtol=1e-4)
    # and it is a real change: without the knock-out the rows after the image differ
    with torch.no_grad():
        plain = model(**one).logits[0]
    assert not torch.allclose(plain[text][after], alone[after], atol=1e-3)


# ----- through the adapter ------------------------------------------------------------------------------


def test_adapter_records_the_setting_and_knocks_out(tiny_llava_dir):
    requests = [
        Request("what is shown ?", [random_image(1)], {}, {"max_new_tokens": NEW_TOKENS}),
        Request("answer with the option letter", [random_image(2)], {}, {"max_new_tokens": NEW_TOKENS}),
    ]
    _, plain = run_adapter(LlavaHfTextdom, tiny_llava_dir, requests)
    _, none = run_adapter(LlavaHfTextdom, tiny_llava_dir, requests, knockout_layers="none")
    _, knocked = run_adapter(LlavaHfTextdom, tiny_llava_dir, requests, knockout_layers="1+3", knockout_score=True)
    unmeasured = LlavaHfTextdom(pretrained=str(tiny_llava_dir), device="cpu", knockout_layers="1+3", textdom=False)._run_batch(requests)
    assert [r.text for r in unmeasured] == [text for text, _ in knocked], "the knock-out must not depend on the probe being active"
    for (pt, pp), (nt, np_), (kt, kp) in zip(plain, none, knocked):
        assert nt == pt and np_["stats"] == pp["stats"]
        assert pp["settings"]["knockout_layers"] is None and kp["settings"]["knockout_layers"] == "1+3"
        mass = np.array(kp["stats"]["mass"])
        assert np.all(mass[[1, 3], 1] == 0) and np.all(mass[[0, 2], 1] > 0)
        assert "knockout" not in pp and kp["knockout"]["answer_tokens"] == pp["stats"]["rows"]
        assert kp["knockout"]["answer_changed"] == (kt != pt)


def test_knockout_effects_score_the_unmasked_answer(tiny_llava, llava_batch):
    """The forced pass's log-probabilities equal an independent teacher-forced forward over prompt + answer."""
    from lmms_textdom.analysis.knockout import knockout_effects

    model, processor = tiny_llava
    one = {k: v[1:] for k, v in llava_batch.items()}
    classes = image_classes(model, one)
    prompt_len = one["input_ids"].shape[1]
    gen = {"max_new_tokens": NEW_TOKENS, "do_sample": False}
    pad = processor.tokenizer.pad_token_id
    with torch.no_grad():
        plain = model.generate(**one, **gen)[:, prompt_len:]
        with KnockOut(model, range(4), classes):
            knocked = model.generate(**one, **gen)[:, prompt_len:]
        (record,) = knockout_effects(model, one, gen, pad, classes, range(4), knocked, prompt_len)
    n = output_lengths(plain, model.generation_config.eos_token_id, pad)[0]
    assert record["answer_tokens"] == n > 0
    assert record["answer_changed"] == (not torch.equal(plain[0, :n], knocked[0, :n]))

    def teacher_forced(knock: bool) -> float:
        full = {**one, "input_ids": torch.cat([one["input_ids"], plain[:, :n]], 1), "attention_mask": torch.ones(1, prompt_len + n, dtype=torch.long)}
        with torch.no_grad(), KnockOut(model, range(4) if knock else (), classes):
            logits = model(**full).logits[0, prompt_len - 1 : prompt_len - 1 + n].double()
        return float(logits.log_softmax(-1).gather(1, plain[0, :n, None]).sum())

    assert record["logprob_plain"] == pytest.approx(teacher_forced(False), abs=1e-3)
    assert record["logprob_knocked"] == pytest.approx(teacher_forced(True), abs=1e-3)
    assert abs(record["logprob_knocked"] - record["logprob_plain"]) > 1e-3


def test_other_family_image_and_video_knocked_out_and_sampled(tiny_qwen_dir, qwen_requests):
    """Qwen2.5-VL (3-D rotary positions, image and video classes): nothing here is LLaVA-specific."""
    from lmms_textdom.analysis.key_space import sample_divergences
    from lmms_textdom.models.qwen2_5_vl.adapter import Qwen25VLTextdom

    _, outputs = run_adapter(Qwen25VLTextdom, tiny_qwen_dir, qwen_requests, knockout_layers="all", knockout_score=True, key_stats=True, key_stats_positions=8)
    for _, payload in outputs:
        stats = payload["stats"]
        mass, classes = np.array(stats["mass"]), stats["classes"]
        nontext = [i for i, name in enumerate(classes) if name != "text" and stats["counts"][i] > 0]
        assert nontext and np.all(mass[:, nontext] == 0) and np.all(mass[:, 0] > 0)
        assert payload["knockout"]["answer_tokens"] == stats["rows"]
        keys = payload["key_stats"]
        present = {classes[i] for i in nontext} | {"text"}
        assert all(set(layer["coords"]) == present for layer in keys["layers"])
        values = sample_divergences(keys)[0]
        assert {f"text~{c}" for c in present - {"text"}} <= set(values)


def test_report_reads_the_setting_from_logs_and_model_args_alike():
    from lmms_textdom.report.runs import run_settings
    from lmms_textdom.report.table import setting_label

    logged = run_settings({"knockout_layers": "0-3+16", "key_stats": True, "prune_ratio": 0.0, "nontext_repeat": 1})
    from_args = run_settings({"knockout_layers": "16+0-3", "key_stats": "True"})  # a results file's model_args string
    older = run_settings({})  # a log from before knock-outs existed
    assert logged == from_args and setting_label(logged) == "knock-out 0-3+16"
    assert older["knockout_layers"] is None and older["key_stats"] is False and setting_label(older) == "default"
