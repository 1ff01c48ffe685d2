"""Per-row masses binned over the answer: against eager attention per row, size bound, undefined cases."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lmms_textdom.core import probe as probe_module
from lmms_textdom.core.metrics import dominance, layer_groups
from lmms_textdom.core.modality import PositionClasses, classify_tokens
from lmms_textdom.core.probe import AttentionProbe, output_lengths
from lmms_textdom.core.stats import SampleStats
from lmms_textdom.core.stepwise import BINS, HEAD, StepMasses
from lmms_textdom.core.views import content_values, decay, step_dominance
from lmms_textdom.integration.hook import encode_payload, split_response, textdom_metrics
from tests.oracle import eager_row_masses
from tests.test_probe import llama_padded_batch

NEW_TOKENS = 21  # more rows than bins: some bins hold two rows


def binned_reference(per_row: np.ndarray, num_layers: int) -> np.ndarray:
    """(groups, HEAD + BINS, columns) straight from the definition, one row at a time."""
    n = per_row.shape[0]
    groups = list(layer_groups(num_layers).values())
    out = np.zeros((len(groups), HEAD + BINS, per_row.shape[2]))
    for i in range(n):
        slots = ([i] if i < HEAD else []) + [HEAD + int(i * BINS / n)]
        for g, layers in enumerate(groups):
            for slot in slots:
                out[g, slot] += per_row[i, list(layers)].sum(0)
    return out


def check_against_eager(model, inputs, classes, pad_token_id, path, **kwargs):
    with AttentionProbe(model, classes) as probe:
        out = model.generate(**inputs, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS - 3, do_sample=False, **kwargs)
    assert probe.path == path
    prompt_len = inputs["input_ids"].shape[1]
    lengths = output_lengths(out[:, prompt_len:], model.generation_config.eos_token_id, pad_token_id)
    stats = probe.stats(lengths)
    sequences, per_rows = eager_row_masses(
        model, inputs, classes.ids, len(classes.names), lengths, NEW_TOKENS, list(classes.subclasses.values())
    )
    assert torch.equal(sequences, out)
    for s, per_row, n in zip(stats, per_rows, lengths):
        assert n > BINS
        steps = s.stepwise
        assert steps.rows[HEAD:].sum() == n and list(steps.rows[:HEAD]) == [1] * HEAD
        assert set(steps.rows[HEAD:]) <= {n // BINS, n // BINS + 1}
        np.testing.assert_allclose(steps.mass, binned_reference(per_row, s.num_layers), atol=1e-5, rtol=1e-5)  # float32 sums
        # the slots' MDI is the paper's formula on the eager masses of those rows
        late = list(layer_groups(s.num_layers)["late"])
        first_row = per_row[0, late].sum(0)
        expected = dominance(first_row[0], first_row[1 : len(s.classes)].sum(), s.text_count, s.nontext_count)
        got = step_dominance(s, "late")[0].mdi
        assert got == expected.mdi if expected.mdi is None else got == pytest.approx(expected.mdi, rel=1e-4)
    return stats


def test_llava_binned_rows_match_eager_in_several_deferred_passes(tiny_llava, llava_batch, monkeypatch):
    monkeypatch.setattr(probe_module, "FLUSH_STEPS", 4)
    model, processor = tiny_llava
    base = classify_tokens(llava_batch["input_ids"], {"image": model.config.image_token_id}, llava_batch["attention_mask"])
    first_text = torch.zeros_like(base.ids, dtype=torch.bool)
    for b in range(base.batch_size):
        first_text[b, int((base.ids[b] == 0).nonzero()[0])] = True
    classes = PositionClasses(base.names, base.ids, {"sink": first_text, "task": (base.ids == 0) & ~first_text})
    stats = check_against_eager(model, llava_batch, classes, processor.tokenizer.pad_token_id, "deferred")
    # a JSON round trip keeps the binned record (7 significant digits)
    back = SampleStats.from_dict(json.loads(json.dumps(stats[0].to_dict())))
    np.testing.assert_allclose(back.stepwise.mass, stats[0].stepwise.mass, rtol=1e-6)


def test_llama_inline_rows_match_eager(tiny_llama):
    model, tok = tiny_llama
    inputs, classes = llama_padded_batch(tok)
    check_against_eager(model, inputs, classes, tok.pad_token_id, "inline", use_cache=False)


def synthetic_stats(rows: int, layers: int, subclasses=("sink", "template", "task", "prefix"), seed: int = 0) -> SampleStats:
    """A record as the probe builds it, from random per-row masses (no model)."""
    rng = np.random.default_rng(seed)
    columns = ("text", "image", "generated", *subclasses)
    per_row = rng.random((rows, layers, len(columns)))
    per_row[..., 3:] *= per_row[..., :1] / per_row[..., 3:].sum(-1, keepdims=True)  # the sub-classes split the text
    summed = per_row.sum(0)
    return SampleStats(
        classes=("text", "image"),
        counts=(120, 576),
        mass=summed[:, :2],
        generated=summed[:, 2],
        rows=rows,
        heads=64,
        subclass_counts={name: 30 for name in subclasses},
        subclass_mass={name: summed[:, 3 + j] for j, name in enumerate(subclasses)},
        stepwise=StepMasses.from_rows(per_row, layer_groups(layers), columns),
    )


def test_sample_log_line_grows_by_at_most_10_kb_at_2048_tokens_and_80_layers():
    stats = synthetic_stats(2048, 80)
    without = SampleStats(**{f: getattr(stats, f) for f in ("classes", "counts", "mass", "generated", "rows", "heads", "subclass_counts", "subclass_mass")})
    detail = lambda s: json.dumps(textdom_metrics(split_response(["a", encode_payload(s, {})])[1]))  # noqa: E731
    added = len(detail(stats)) - len(detail(without))
    assert 0 < added <= 10_000, added
    assert "stepwise" in json.loads(detail(stats))["textdom"]


def test_one_token_answer_and_missing_task_text_give_explicit_none():
    one = synthetic_stats(1, 4, subclasses=("sink", "template"))
    assert decay(one, "late") is None
    slots = step_dominance(one, "late")
    assert slots[0].mdi is not None and slots[HEAD].mdi is not None
    assert all(d.mdi is None for d in slots[1:HEAD] + slots[HEAD + 1 :])
    assert set(content_values(one).values()) == {None}
    longer = synthetic_stats(64, 4)
    assert decay(longer, "late") is not None and all(v is not None for v in content_values(longer).values())


def test_binned_record_must_cover_every_row():
    stats = synthetic_stats(10, 4)
    steps = stats.stepwise
    short = StepMasses(steps.groups, steps.columns, np.r_[steps.rows[:-1], steps.rows[-1] + 1], steps.mass)
    with pytest.raises(ValueError, match="bin all 10 rows"):
        SampleStats(**{**{f: getattr(stats, f) for f in ("classes", "counts", "mass", "generated", "rows", "heads", "subclass_counts", "subclass_mass")}, "stepwise": short})
