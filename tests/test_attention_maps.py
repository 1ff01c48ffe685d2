"""Attention maps in the probe: the attention each non-text position receives, against eager attention."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

from lmms_textdom.core import attention_maps as record
from lmms_textdom.core import probe as probe_module
from lmms_textdom.core.attention_maps import AttentionMaps, bin_of_positions, choose_pool, spread
from lmms_textdom.core.forced import answer_tensor, forced_inputs
from lmms_textdom.core.metrics import layer_groups
from lmms_textdom.core.modality import PositionClasses, classify_tokens
from lmms_textdom.core.position_maps import PositionMaps, quarter_rows
from lmms_textdom.core.probe import AttentionProbe, output_lengths
from lmms_textdom.core.views import quarter_slots
from lmms_textdom.tiny.common import instantiate, language_model_fields
from tests.oracle import eager_position_rows
from tests.test_probe import llama_padded_batch

NEW_TOKENS = 6


def probed(model, inputs, classes, pad_id, cut=None, **generate_kwargs):
    """(stats, maps with quarters, lengths, sequences) of a probed greedy generate; ``cut`` ends answers early."""
    with torch.inference_mode(), AttentionProbe(model, classes, attention_maps=True) as probe:
        out = model.generate(**inputs, max_new_tokens=NEW_TOKENS, do_sample=False, pad_token_id=pad_id, **generate_kwargs)
    prompt_len = inputs["input_ids"].shape[1] if "input_ids" in inputs else 0
    lengths = output_lengths(out[:, prompt_len:], model.generation_config.eos_token_id, pad_id)
    if cut is not None:
        lengths = [min(n, c) for n, c in zip(lengths, cut)]
    return probe.stats(lengths), probe.attention_maps(lengths, quarters=True), lengths, out


def expected_maps(rows: np.ndarray, class_ids: torch.Tensor, names, num_layers: int) -> dict:
    """{group: {class: per-position sums}} from eager per-row, per-layer, per-position attention."""
    out = {}
    for group, layers in layer_groups(num_layers).items():
        summed = rows[:, list(layers)].sum(axis=(0, 1))
        out[group] = {name: summed[(class_ids == c).numpy()] for c, name in enumerate(names) if c > 0}
    return out


def assert_identity(stats, maps) -> None:
    """Each class's map sums to its stats mass over the group's layers (1e-5, relative to the mass)."""
    for group, layers in layer_groups(stats.num_layers).items():
        for c, name in enumerate(stats.classes[1:], start=1):
            mass = stats.mass[list(layers), c].sum()
            assert maps.class_sums(group)[name] == pytest.approx(mass, rel=1e-5, abs=1e-6), (group, name)


def assert_maps_match_eager(model, inputs, classes, pad_id, cut=None, **generate_kwargs):
    stats, maps, lengths, out = probed(model, inputs, classes, pad_id, cut, **generate_kwargs)
    sequences, rows = eager_position_rows(model, inputs, classes.length, lengths, NEW_TOKENS)
    assert torch.equal(sequences, out)
    for b, (s, m, r) in enumerate(zip(stats, maps, rows)):
        assert m.rows == s.rows == lengths[b]
        assert_identity(s, m)
        for group, by_class in expected_maps(r, classes.ids[b], classes.names, s.num_layers).items():
            for name, values in by_class.items():
                np.testing.assert_allclose(m.groups[group][name], values, atol=1e-5, rtol=0, err_msg=f"{group}/{name}")
        for quarter, part in m.quarters.items():
            chosen = quarter_rows(lengths[b])[quarter]
            assert part["rows"] == len(chosen)
            for group, by_class in expected_maps(r[chosen], classes.ids[b], classes.names, s.num_layers).items():
                for name, values in by_class.items():
                    np.testing.assert_allclose(part["groups"][group][name], values, atol=1e-5, rtol=0)
    return stats, maps


def test_maps_equal_eager_attention_per_position_on_a_padded_llava_batch(tiny_llava, llava_batch, monkeypatch):
    monkeypatch.setattr(probe_module, "FLUSH_STEPS", 2)  # rows scored in several deferred passes
    model, processor = tiny_llava
    classes = classify_tokens(llava_batch["input_ids"], {"image": model.config.image_token_id}, llava_batch["attention_mask"])
    # the first answer counts 3 rows only: its later rows must be left out, as in the stats
    stats, maps = assert_maps_match_eager(model, llava_batch, classes, processor.tokenizer.pad_token_id, cut=[3, NEW_TOKENS])
    assert maps[0].rows == 3 and maps[0].parts == {"image": [25]} and maps[0].pool == {"image": 1}


def test_inline_and_sliding_window_layers_give_the_same_maps_as_eager(tiny_llama):
    model, tok = tiny_llama
    inputs, classes = llama_padded_batch(tok)
    assert_maps_match_eager(model, inputs, classes, tok.pad_token_id, use_cache=False)
    config = Qwen2Config(**language_model_fields(tok, 4, 64, 8, 2, 0.2), use_sliding_window=True, sliding_window=5, max_window_layers=2)
    windowed = instantiate(Qwen2ForCausalLM, config, tok, seed=0, attn_implementation="sdpa")
    assert_maps_match_eager(windowed, inputs, classes, tok.pad_token_id)


def test_teacher_forced_rows_give_the_generated_maps(tiny_llava, llava_batch):
    model, processor = tiny_llava
    pad = processor.tokenizer.pad_token_id
    classes = classify_tokens(llava_batch["input_ids"], {"image": model.config.image_token_id}, llava_batch["attention_mask"])
    _, generated, lengths, out = probed(model, llava_batch, classes, pad, cut=[4, NEW_TOKENS])
    prompt_len = llava_batch["input_ids"].shape[1]
    answers = [out[b, prompt_len : prompt_len + n].tolist() for b, n in enumerate(lengths)]
    tokens = answer_tensor(answers, pad)
    with torch.inference_mode(), AttentionProbe(model, classes, answer_rows=tokens.shape[1], attention_maps=True) as probe:
        model(**forced_inputs(model, llava_batch, tokens))
    forced = probe.attention_maps(lengths, quarters=True)
    for f, g in zip(forced, generated):
        for group in g.groups:
            np.testing.assert_allclose(f.groups[group]["image"], g.groups[group]["image"], atol=1e-5, rtol=1e-5)
            for quarter in g.quarters:
                np.testing.assert_allclose(f.quarters[quarter]["groups"][group]["image"], g.quarters[quarter]["groups"][group]["image"], atol=1e-5, rtol=1e-5)


def test_pooled_maps_are_sums_of_neighbours_within_each_part(tiny_llava, llava_batch, monkeypatch):
    model, processor = tiny_llava
    pad = processor.tokenizer.pad_token_id
    classes = classify_tokens(llava_batch["input_ids"], {"image": model.config.image_token_id}, llava_batch["attention_mask"])
    _, full, lengths, _ = probed(model, llava_batch, classes, pad)
    monkeypatch.setattr(record, "LIMIT", 7)  # 25 image positions: pooled by 4 into 7 values
    stats, pooled, _, _ = probed(model, llava_batch, classes, pad)
    for s, f, p in zip(stats, full, pooled):
        assert p.pool == {"image": 4} and len(p.groups["late"]["image"]) == 7
        assert_identity(s, p)
        bins = bin_of_positions([25], 4)
        for group in f.groups:
            expected = np.bincount(bins, weights=f.groups[group]["image"].astype(np.float64))
            np.testing.assert_allclose(p.groups[group]["image"], expected, rtol=1e-5, atol=1e-6)


def test_given_parts_keep_bins_inside_items():
    ids = torch.tensor([[0, 1, 1, 1, 1, 1, 0, 2, 2]])
    classes = PositionClasses(("text", "image", "video"), ids)
    maps = PositionMaps(classes, 4, parts=[{"image": [3, 2]}], limit=2)
    sizes, pool, part = maps.plans[0]["image"]
    assert (sizes, pool, part.stop - part.start) == ([3, 2], 3, 2)  # pool 2 would need 2 + 1 = 3 values
    assert maps.plans[0]["video"][:2] == ([2], 1)  # runs of the class by default
    with pytest.raises(ValueError, match="do not cover"):
        PositionMaps(classes, 4, parts=[{"image": [4]}])


def test_pool_is_the_smallest_that_fits_the_limit():
    assert choose_pool([10], 10) == 1
    assert choose_pool([16384], 4096) == 4
    assert choose_pool([5, 5, 5], 6) == 3  # pool 2 needs 3 + 3 + 3 values
    assert bin_of_positions([5, 3], 2).tolist() == [0, 0, 1, 1, 2, 3, 3, 4]


def test_spread_numbers_by_hand():
    uniform = spread(np.ones(20))
    assert uniform.entropy == pytest.approx(math.log(20)) and uniform.entropy_normalized == pytest.approx(1.0)
    assert uniform.top10_share == pytest.approx(2 / 20)
    peaked = spread(np.array([0.0, 5.0, 0.0]))
    assert peaked.entropy == 0.0 and peaked.entropy_normalized == 0.0 and peaked.top10_share == 1.0
    mixed = spread(np.array([3.0, 1.0, 0.0, 0.0]))  # p = (3/4, 1/4); top ceil(0.4) = 1 value
    assert mixed.entropy == pytest.approx(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    assert mixed.entropy_normalized == pytest.approx(mixed.entropy / math.log(4)) and mixed.top10_share == pytest.approx(0.75)
    assert spread(np.zeros(3)).entropy is None and spread(np.zeros(0)).top10_share is None
    assert spread(np.array([2.0])).entropy_normalized is None


def test_record_size_is_bounded_at_16k_video_tokens():
    """16,384 video positions: pooled by 4 into LIMIT values per group; the identity holds on what is stored."""
    video, text, layers, rows = 16384, 40, 8, 5
    ids = torch.zeros(1, text + video, dtype=torch.long)
    ids[0, 20 : 20 + video] = 1
    classes = PositionClasses(("text", "video"), ids)
    maps = PositionMaps(classes, layers)
    generator = torch.Generator().manual_seed(0)
    received = {}
    for layer in range(layers):
        per_position = torch.rand(1, rows, text + video + rows, generator=generator).softmax(-1) * 4  # 4 heads
        maps.add(0, layer, per_position)
        received[layer] = per_position[0, :, 20 : 20 + video].double().sum().item()
    (sample,) = maps.sample_maps([rows], quarters=True)
    assert sample.pool == {"video": 4} and all(len(g["video"]) == record.LIMIT for g in sample.groups.values())
    stored = AttentionMaps.from_dict(json.loads(json.dumps(sample.to_dict())))
    for group, idx in sample.layers.items():
        assert stored.class_sums(group)["video"] == pytest.approx(sum(received[i] for i in idx), rel=1e-5)
    plain = len(json.dumps({**sample.to_dict(), "quarters": None}))
    with_quarters = len(json.dumps(sample.to_dict()))
    # at most ~14 bytes per float32 value as JSON text (the shortest text that reads back exactly)
    assert plain < 3 * record.LIMIT * 14 and with_quarters < 3.2 * plain
    print(f"record at 16k video tokens: {plain / 1024:.0f} KiB, with quarters {with_quarters / 1024:.0f} KiB")


def test_a_probe_without_maps_keeps_no_map_state(tiny_llama):
    model, tok = tiny_llama
    inputs, classes = llama_padded_batch(tok)
    with torch.inference_mode(), AttentionProbe(model, classes) as probe:
        model.generate(**inputs, max_new_tokens=2, do_sample=False, pad_token_id=tok.pad_token_id)
    assert probe._recorder.maps is None
    with pytest.raises(probe_module.ProbeError, match="attention_maps=True"):
        probe.attention_maps()


def test_quarters_are_the_rows_of_the_stepwise_quarter_bins():
    from lmms_textdom.core.stepwise import slot_rows

    for n in (1, 3, 4, 7, 16, 33):
        slots = slot_rows(n)
        first, last = quarter_slots(type("S", (), {"stepwise": type("W", (), {"head": 4, "bins": 16})})())
        rows = quarter_rows(n)
        assert rows["first"].tolist() == [int(i) for s in first for i in slots[s]]
        assert rows["last"].tolist() == [int(i) for s in last for i in slots[s]]


def test_layout_values_add_copies_spread_bins_and_drop_what_was_pruned():
    from lmms_textdom.report.map_layout import per_position, placed_items

    assert per_position(np.array([4.0, 1.0, 6.0]), [5], 2).tolist() == [2.0, 2.0, 0.5, 0.5, 6.0]  # bins of 2, 2 and 1
    item = {"class": "image", "kind": "image", "positions": 4, "offsets": [3, 0, 3, 0], "views": [{"start": 0, "rows": 2, "cols": 2, "box": [0, 0, 1, 1]}]}
    maps = AttentionMaps(
        parts={"image": [4]}, pool={"image": 1}, layers={"late": (2, 3)}, rows=1,
        groups={"late": {"image": np.array([1.0, 2.0, 3.0, 4.0], dtype=np.float32)}}, items=[item],
    )  # fmt: skip
    (placed,) = placed_items(maps, "late")
    np.testing.assert_array_equal(placed.grid(item["views"][0]), [[6.0, np.nan], [np.nan, 4.0]])  # copies add; 1 and 2 pruned


def test_a_family_that_places_nothing_gets_a_strip_per_run(tiny_llava, llava_batch, tmp_path):
    from lmms_textdom.models.placement import run_items
    from lmms_textdom.report.map_samples import MapSample
    from lmms_textdom.report.viewer import page

    model, processor = tiny_llava
    classes = classify_tokens(llava_batch["input_ids"], {"image": model.config.image_token_id}, llava_batch["attention_mask"])
    _, maps, _, _ = probed(model, llava_batch, classes, processor.tokenizer.pad_token_id)
    items = run_items(classes, 0)
    assert [(i["kind"], i["positions"]) for i in items] == [("positions", 25)]
    sample = MapSample("task", 0, "q", "a", "t", {}, {}, AttentionMaps.from_dict({**maps[0].to_dict(), "items": items}))
    html = page("run", [sample], {})
    assert html.count("data-position=") == 25 * len(maps[0].groups) * 3  # every position, in each group and answer part
