"""Mitigation switches on a fixed (teacher-forced) answer, against eager attention with the same edit
written here independently: each chosen layer changes exactly as its formula says, the others not.

The reference is transformers' eager attention of a copy of the tiny LLaVA with the model file's
``eager_attention_forward`` replaced by one that edits the scores of the chosen layers with loops over
samples and rows (no code of ``lmms_textdom.mitigations``); its ``output_attentions`` give the rows the
probe must record, and its logits the ones the switched model must produce.
"""

from __future__ import annotations

import copy
import math
import sys

import numpy as np
import pytest
import torch

from lmms_textdom.core.forced import answer_tensor, forced_inputs
from lmms_textdom.core.modality import PAD, classify_tokens
from lmms_textdom.core.probe import MASK_EDIT, SCORE_EDIT, AttentionProbe, language_model_layers
from lmms_textdom.core.text_parts import SINK, TEMPLATE, with_text_parts
from lmms_textdom.mitigations.attention import AttentionSwitches
from lmms_textdom.mitigations.settings import Switches
from tests.conftest import llava_prompt, random_image

ANSWERS = [[11, 12, 13, 14, 15], [21, 22, 23]]  # a fixed answer per sample, of different lengths

SWITCHES = {
    "pai": Switches(boost=0.5, boost_mode="pai", boost_layers=frozenset({1, 3})),
    "scale": Switches(boost=0.8, boost_mode="scale", boost_layers=frozenset({1, 3})),
    "damp": Switches(boost=-0.6, boost_mode="scale", boost_layers=frozenset({2})),
    "shift": Switches(enhance=1.6, suppress=0.4, shift_layers=frozenset({1, 2})),
    "shift_then_pai": Switches(boost=0.3, boost_layers=frozenset({1, 2}), enhance=1.3, suppress=0.7, shift_layers=frozenset({2, 3})),
}


@pytest.fixture(scope="module")
def case(tiny_llava):
    model, processor = tiny_llava
    processor.tokenizer.padding_side = "left"
    questions = ["what is shown in the image ?", "answer with the option letter from the given choices directly . a b c d"]
    texts = [llava_prompt(processor, q) for q in questions]
    inputs = dict(processor(text=texts, images=[random_image(1), random_image(2)], return_tensors="pt", padding=True))
    classes = classify_tokens(inputs["input_ids"], {"image": model.config.image_token_id}, inputs["attention_mask"])
    classes = with_text_parts(classes, inputs["input_ids"], texts, questions, processor.tokenizer)
    assert (inputs["attention_mask"] == 0).any(), "the batch must be left-padded"
    tokens = answer_tensor(ANSWERS, processor.tokenizer.pad_token_id)
    return model, inputs, classes, tokens


# ----- the independent reference -----------------------------------------------------------------------


def edited_positions(classes):
    """Per sample: the last non-text position, the non-text positions and the system positions (the
    sink/template run at the start of the real tokens), by plain loops over the class map."""
    out = []
    for b in range(classes.batch_size):
        ids = classes.ids[b].tolist()
        nontext = [j for j, c in enumerate(ids) if c > 0]
        system, lead = [], classes.subclasses[SINK][b] | classes.subclasses[TEMPLATE][b]
        for j, c in enumerate(ids):
            if c == PAD:
                continue
            if not lead[j]:
                break
            system.append(j)
        out.append((max(nontext), nontext, system))
    return out


def reference_edit(scores, layer, switches: Switches, positions) -> torch.Tensor:
    """The switches' formulas on one layer's scores (batch, heads, rows, keys) of a full forward pass."""
    scores = scores.clone()
    for b, (last, nontext, system) in enumerate(positions):
        for row in range(last + 1, scores.shape[2]):
            if layer in switches.shift_layers:
                scores[b, :, row, nontext] = scores[b, :, row, nontext] * switches.enhance
                scores[b, :, row, system] = scores[b, :, row, system] * switches.suppress
            if layer in switches.boost_layers and switches.boost_mode == "pai":
                s = scores[b, :, row, nontext]
                scores[b, :, row, nontext] = s + switches.boost * s.abs()
            if layer in switches.boost_layers and switches.boost_mode == "scale":
                scores[b, :, row, nontext] = scores[b, :, row, nontext] + math.log(1 + switches.boost)
    return scores


def reference_run(model, inputs: dict, switches: Switches, positions):
    """(logits, per-layer attention weights) of an eager copy whose attention edits the chosen layers."""
    eager = copy.deepcopy(model)
    eager.set_attn_implementation("eager")
    module = sys.modules[type(language_model_layers(eager).popitem()[0]).__module__]
    original = module.eager_attention_forward

    def edited(attention, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
        groups = query.shape[1] // key.shape[1]
        k, v = key.repeat_interleave(groups, 1), value.repeat_interleave(groups, 1)
        scores = torch.matmul(query.float(), k.float().transpose(2, 3)) * scaling
        scores = reference_edit(scores, attention.layer_idx, switches, positions)
        if attention_mask is not None:
            scores = scores + attention_mask
        weights = scores.softmax(-1)
        return torch.matmul(weights.to(v.dtype), v).transpose(1, 2).contiguous(), weights

    module.eager_attention_forward = edited
    try:
        with torch.no_grad():
            out = eager(**inputs, output_attentions=True)
    finally:
        module.eager_attention_forward = original
    return out.logits, out.attentions


def reference_rows(attentions, classes, prompt_len: int, answer_rows: int) -> np.ndarray:
    """(answer rows, layers, batch, classes + 1): the probe's record of the same pass, from the weights."""
    names = len(classes.names)
    out = np.zeros((answer_rows, len(attentions), classes.batch_size, names + 1))
    for layer, weights in enumerate(attentions):
        for t in range(answer_rows):
            row = weights[:, :, prompt_len - 1 + t].double().sum(1)  # (batch, keys), heads summed
            for c in range(names):
                out[t, layer, :, c] = (row[:, :prompt_len] * (classes.ids == c)).sum(1).numpy()
            out[t, layer, :, names] = row[:, prompt_len:].sum(1).numpy()
    return out


def switched_run(model, inputs, classes, tokens, switches: Switches):
    """(probe rows, all logits) of the switched model on the teacher-forced pass."""
    forward = forced_inputs(model, inputs, tokens)
    with torch.no_grad(), AttentionSwitches(model, switches, classes):
        with AttentionProbe(model, classes, answer_rows=tokens.shape[1]) as probe:
            model(**forward)
        logits = model(**{**forward, "logits_to_keep": 0}).logits
    return probe._recorder._rows.double().numpy(), logits


# ----- the tests ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
@pytest.mark.parametrize("name", list(SWITCHES))
def test_each_switch_edits_exactly_its_layers_as_its_formula_says(case, name, implementation):
    model, inputs, classes, tokens = case
    if implementation == "eager":
        model = copy.deepcopy(model)
        model.set_attn_implementation("eager")
    switches = SWITCHES[name]
    prompt_len, rows = classes.length, tokens.shape[1]
    positions = edited_positions(classes)
    assert all(system and system[-1] < min(nontext) for _, nontext, system in positions), "a system prompt before the image"
    forward = {k: v for k, v in forced_inputs(model, inputs, tokens).items() if k != "logits_to_keep"}
    expected_logits, attentions = reference_run(model, forward, switches, positions)
    plain_logits, plain_attentions = reference_run(model, forward, Switches(), positions)
    got_rows, got_logits = switched_run(model, inputs, classes, tokens, switches)
    expected = reference_rows(attentions, classes, prompt_len, rows)
    plain = reference_rows(plain_attentions, classes, prompt_len, rows)
    chosen = sorted(switches.boost_layers | switches.shift_layers)
    for b, answer in enumerate(ANSWERS):
        n = len(answer)
        np.testing.assert_allclose(got_rows[:n, :, b, :3], expected[:n, :, b], atol=2e-5, rtol=0)
        # the model's own output follows the edited attention (real positions only)
        real = torch.cat([inputs["attention_mask"][b].bool(), torch.ones(n - 1, dtype=torch.bool)])
        torch.testing.assert_close(got_logits[b, : real.shape[0]][real], expected_logits[b, : real.shape[0]][real], atol=1e-4, rtol=1e-4)
        # layers below the first chosen one are the plain run's; each chosen layer moves the image mass
        np.testing.assert_allclose(got_rows[:n, : chosen[0], b, :3], plain[:n, : chosen[0], b], atol=2e-5, rtol=0)
        for layer in chosen:
            assert np.abs(got_rows[:n, layer, b, 1] - plain[:n, layer, b, 1]).max() > 1e-3, (name, layer)
    if name in ("pai", "scale", "shift"):
        boosted = got_rows[:, chosen[0], :, 1].sum() > plain[:, chosen[0], :, 1].sum()
        assert boosted, "a boost (ENH > 1) moves attention mass onto the image"


def test_rows_up_to_the_end_of_the_span_are_untouched(case):
    """The edit selects rows after the span only: every layer's hidden states up to it stay the plain run's."""
    model, inputs, classes, tokens = case
    positions = edited_positions(classes)
    forward = {**forced_inputs(model, inputs, tokens), "logits_to_keep": 0, "output_hidden_states": True}
    with torch.no_grad():
        plain = model(**forward).hidden_states
        with AttentionSwitches(model, SWITCHES["shift_then_pai"], classes):
            edited = model(**forward).hidden_states
    for b, (last, _, _) in enumerate(positions):
        real = inputs["attention_mask"][b, : last + 1].bool()
        for mine, theirs in zip(edited, plain):
            torch.testing.assert_close(mine[b, : last + 1][real], theirs[b, : last + 1][real], atol=1e-5, rtol=1e-5)
        assert (edited[-1][b, last + 1 :] - plain[-1][b, last + 1 :]).abs().max() > 1e-3, "rows after the span change"


def test_neutral_switches_install_nothing(case):
    model, inputs, classes, tokens = case
    with AttentionSwitches(model, Switches(boost=0.0, enhance=1.0, suppress=1.0), classes):
        assert not any(SCORE_EDIT in m.__dict__ or MASK_EDIT in m.__dict__ for m in language_model_layers(model))
    with AttentionSwitches(model, SWITCHES["shift_then_pai"], classes):
        assert sum(SCORE_EDIT in m.__dict__ for m in language_model_layers(model)) == 3
    assert not any(SCORE_EDIT in m.__dict__ for m in language_model_layers(model)), "the edits must be removed on exit"


def test_scale_mode_is_refused_by_attention_without_a_mask(case):
    from lmms_textdom.core.probe import ProbeError

    model, _, classes, _ = case
    flexible = copy.deepcopy(model)
    flexible.set_attn_implementation("flex_attention")
    with pytest.raises(ProbeError, match="attn_boost_mode=scale edits the attention mask"):
        with AttentionSwitches(flexible, SWITCHES["scale"], classes):
            pass


@pytest.mark.parametrize("name", ["shift_then_pai", "scale"])
def test_generate_records_what_the_teacher_forced_pass_records(case, name, monkeypatch):
    """The probe's deferred (several passes) and inline paths apply the edit as the teacher-forced one does."""
    from lmms_textdom.core import probe as probe_module
    from lmms_textdom.core.probe import output_lengths
    from tests.test_forced_probe import assert_same_record, forced_stats

    monkeypatch.setattr(probe_module, "FLUSH_STEPS", 3)
    model, inputs, classes, _ = case
    pad = model.config.get_text_config().pad_token_id or 0
    switches = SWITCHES[name]
    for extra, path in (({}, "deferred"), ({"use_cache": False}, "inline")):
        with torch.no_grad(), AttentionSwitches(model, switches, classes):
            with AttentionProbe(model, classes) as probe:
                out = model.generate(**inputs, max_new_tokens=7, do_sample=False, pad_token_id=pad, **extra)
            new = out[:, inputs["input_ids"].shape[1] :]
            lengths = output_lengths(new, model.generation_config.eos_token_id, pad)
            answers = [new[b, :n].tolist() for b, n in enumerate(lengths)]
            assert probe.path == path
            generated = probe.stats(lengths)
            forced = forced_stats(model, inputs, classes, answers, pad)
        for got, want in zip(generated, forced):
            assert_same_record(got, want)


def test_blind_has_no_nontext_position_and_the_same_text(tiny_llava_dir):
    """LLaVA's blind prompt is its own text-only prompt; the task's tokens are the plain prompt's, id for id."""
    from lmms_textdom.core.text_parts import TASK
    from lmms_textdom.mitigations.blind import blind_request
    from lmms_textdom.models.base import Request
    from lmms_textdom.models.llava.adapter import LlavaHfTextdom

    adapter = LlavaHfTextdom(pretrained=str(tiny_llava_dir), device="cpu", blind=True)
    request = Request("which colour dominates the picture ? a red b blue", [random_image(1), random_image(2)], {}, {})
    plain, blind = adapter.prepare([request]), adapter.prepare([blind_request(request)])
    assert (plain.classes.ids > 0).sum() == 50 and not (blind.classes.ids > 0).any()
    text_only = adapter.processor.tokenizer(adapter.prompt(request.context, 0), return_tensors="pt")["input_ids"]
    assert torch.equal(blind.inputs["input_ids"], text_only)
    task = [ids[parts.subclasses[TASK][0]].tolist() for ids, parts in ((plain.inputs["input_ids"][0], plain.classes), (blind.inputs["input_ids"][0], blind.classes))]
    assert task[0] == task[1] and len(task[0]) > 5
    # a family whose task text carries the placeholders: they go with the visuals
    marked = Request("series one <ts><ts/> and two <ts><ts/>: which rises ?", [[1.0, 2.0], [3.0]], {"id": 1}, {"max_new_tokens": 3})
    cut = blind_request(marked, ("<ts><ts/>",))
    assert (cut.context, cut.visuals, cut.doc, cut.gen_kwargs) == ("series one  and two : which rises ?", [], {"id": 1}, {"max_new_tokens": 3})


def test_scored_attention_reads_every_mask_form_alike(tiny_llama):
    """The edited layers' own attention gives the same output whether the backend handed over a 4-D mask
    (sdpa, eager), flash attention's 2-D padding mask, or none (no padding), prefill and decoding alike."""
    from lmms_textdom.core.scored_attention import scored_attention

    model, _ = tiny_llama
    module = next(iter(language_model_layers(model)))
    generator = torch.Generator().manual_seed(0)
    batch, heads, kv_heads, dim, keys = 2, 8, 2, 8, 9
    query = torch.randn(batch, heads, keys, dim, generator=generator)
    key = torch.randn(batch, kv_heads, keys, dim, generator=generator)
    value = torch.randn(batch, kv_heads, keys, dim, generator=generator)
    padding = torch.ones(batch, keys, dtype=torch.long)
    padding[0, :3] = 0  # left padding of the first sequence
    causal = torch.arange(keys)[None, :] <= torch.arange(keys)[:, None]
    dense = (causal[None, None] & padding[:, None, None, :].bool()).expand(batch, 1, keys, keys)

    def edit(scores, rows, first_key):  # any edit: a row- and column-dependent one
        return scores * (1 + 0.1 * rows[:, None]) + 0.05 * torch.arange(first_key, first_key + scores.shape[-1])

    for queries in (keys, 1):  # prefill, then one decoding step
        q = query[:, :, -queries:]
        four_d, _ = scored_attention(module, q, key, value, dense[:, :, -queries:], edit, scaling=0.3)
        two_d, _ = scored_attention(module, q, key, value, padding, edit, scaling=0.3)
        real = padding[:, -queries:].bool()
        torch.testing.assert_close(two_d[real], four_d[real])
        unpadded, _ = scored_attention(module, q[1:], key[1:], value[1:], None, edit, scaling=0.3)
        torch.testing.assert_close(unpadded, four_d[1:])
