"""[CLS]-guided pruning and non-text replication against independent computations."""

from __future__ import annotations

import copy

import pytest
import torch

from lmms_textdom.core.errors import UsageError
from lmms_textdom.models.base import Request
from lmms_textdom.models.llava.adapter import LlavaHfTextdom
from lmms_textdom.editing.pruning import ClsAttentionCapture, feature_layer_attention, kept_count, top_m_in_order
from lmms_textdom.editing.sequence import item_spans, nontext_spans, plan_positions, split_span
from tests.adapter_runs import assert_batch_equals_single, run_adapter
from tests.conftest import random_image

NEW_TOKENS = 6


@pytest.mark.parametrize("ratio,kept", [(0.0, 576), (0.75, 144), (0.90, 58), (0.95, 29), (0.5, 288)])
def test_fastervlm_kept_counts(ratio, kept):
    assert kept_count(576, ratio) == kept


def test_kept_count_bounds():
    assert kept_count(25, 0.5) == 13 and kept_count(25, 0.99) == 1
    for bad in (1.0, 1.5, -0.1):
        with pytest.raises(UsageError, match="0 <= r < 1"):
            kept_count(576, bad)


def test_top_m_keeps_the_highest_scores_in_original_order():
    scores = torch.tensor([0.1, 0.9, 0.3, 0.8, 0.05, 0.7])
    assert top_m_in_order(scores, 3).tolist() == [1, 3, 5]
    generator = torch.Generator().manual_seed(0)
    many = torch.rand(576, generator=generator)
    kept = top_m_in_order(many, 58)
    assert kept.tolist() == sorted(torch.argsort(many, descending=True)[:58].tolist())


def test_cls_scores_equal_eager_clip_attention(tiny_llava, llava_batch):
    model, _ = tiny_llava
    tower = model.model.vision_tower
    layer = model.config.vision_feature_layer
    capture = ClsAttentionCapture(feature_layer_attention(tower, layer))
    with capture.recording():
        tower(llava_batch["pixel_values"])  # the tower runs its own sdpa attention
    assert model.config.vision_config._attn_implementation == "sdpa"
    eager = copy.deepcopy(tower)
    eager.set_attn_implementation("eager")
    attentions = eager(llava_batch["pixel_values"], output_attentions=True).attentions
    expected = attentions[layer][:, :, 0, 1:].mean(1)  # CLS query, patch keys, heads averaged
    assert capture.scores.shape == (2, 25)
    torch.testing.assert_close(capture.scores, expected, atol=1e-6, rtol=0)


def test_spans_and_positions():
    ids = torch.tensor([-1, 0, 1, 1, 1, 0, 1, 1, 0])
    spans = nontext_spans(ids)
    assert spans == [(2, 5), (6, 8)]
    keep = [torch.tensor([0, 2]), None]
    assert plan_positions(ids, spans, keep, repeat=2).tolist() == [1, 2, 4, 2, 4, 5, 6, 7, 6, 7, 8]
    assert split_span((2, 8), [2, 4]) == [(2, 4), (4, 8)]
    with pytest.raises(ValueError, match="cannot hold pieces"):
        split_span((2, 8), [2, 2])


def test_item_spans_split_adjacent_items_and_check_the_count():
    ids = torch.tensor([[0, 1, 1, 1, 0, 1, 1], [-1, 0, 1, 1, 0, 0, 0]])
    spans = item_spans(ids, {1: [2, 1, 2, 2]})
    assert [[span for _, _, span in row] for row in spans] == [[(1, 3), (3, 4), (5, 7)], [(2, 4)]]
    assert [[item for _, item, _ in row] for row in spans] == [[0, 1, 2], [3]]
    with pytest.raises(ValueError, match="5 items of class 1 given, but the placeholders hold 4"):
        item_spans(ids, {1: [2, 1, 2, 2, 5]})
    for sizes in ([3, 3, 2], [3]):  # an item too large for its run, items missing
        with pytest.raises(ValueError, match="cannot hold pieces"):
            item_spans(ids, {1: sizes})


@pytest.fixture(scope="module")
def requests_two():
    return [
        Request("what is shown in the image ?", [random_image(1)], {}, {"max_new_tokens": NEW_TOKENS}),
        Request("answer with the option letter from the given choices directly . a b c d", [random_image(2), random_image(3)], {}, {"max_new_tokens": NEW_TOKENS}),
    ]


def run(tiny_llava_dir, requests, **model_args):
    return run_adapter(LlavaHfTextdom, tiny_llava_dir, requests, **model_args)


def test_edit_path_without_pruning_equals_the_stock_path(tiny_llava_dir, requests_two):
    adapter = LlavaHfTextdom(pretrained=str(tiny_llava_dir), device="cpu")
    prepared = adapter.prepare(requests_two)
    edited = adapter.edited_inputs(prepared.inputs, prepared.classes)  # keeps every token, repeat 1
    stock = adapter.model.generate(**prepared.inputs, max_new_tokens=NEW_TOKENS, do_sample=False)
    ours = adapter.model.generate(**edited.inputs, max_new_tokens=NEW_TOKENS, do_sample=False)
    assert torch.equal(stock[:, prepared.inputs["input_ids"].shape[1] :], ours)
    assert torch.equal(edited.classes.ids, prepared.classes.ids)


def test_pruned_generation_equals_hand_fed_kept_features(tiny_llava_dir, tiny_llava, requests_two):
    adapter, results = run(tiny_llava_dir, requests_two[:1], prune_ratio=0.6)
    (text, payload), = results
    model, processor = adapter.model, adapter.processor
    config = model.config
    # by hand: eager CLIP attention for the scores, the kept features, a prompt with M placeholders
    pixel_values = processor(images=[requests_two[0].visuals[0]], text=["<image>"], return_tensors="pt")["pixel_values"]
    eager = copy.deepcopy(model.model.vision_tower)
    eager.set_attn_implementation("eager")
    cls_row = eager(pixel_values, output_attentions=True).attentions[config.vision_feature_layer][0, :, 0, 1:].mean(0)
    m = round(25 * 0.4)
    kept = sorted(torch.argsort(cls_row, descending=True)[:m].tolist())
    features = model.get_image_features(
        pixel_values=pixel_values, vision_feature_layer=config.vision_feature_layer,
        vision_feature_select_strategy=config.vision_feature_select_strategy,
    ).pooler_output[0]  # fmt: skip
    prompt = adapter.prompt(requests_two[0].context, 1).replace("<image>", "<image>" * m)
    ids = processor.tokenizer(prompt, return_tensors="pt")["input_ids"]
    embeds = model.get_input_embeddings()(ids)
    embeds[ids == config.image_token_id] = features[kept]
    by_hand = model.generate(inputs_embeds=embeds, attention_mask=torch.ones_like(ids), max_new_tokens=NEW_TOKENS, do_sample=False)
    assert text == processor.tokenizer.decode(by_hand[0], skip_special_tokens=True)
    assert payload["stats"]["counts"][1] == m == payload["settings"]["nontext_kept"]
    expected = {"prune_method": "cls", "prune_ratio": 0.6, "nontext_repeat": 1, "nontext_original": 25}
    assert {k: payload["settings"][k] for k in expected} == expected


def test_replication_counts_follow(tiny_llava_dir, requests_two):
    _, plain = run(tiny_llava_dir, requests_two)
    _, repeated = run(tiny_llava_dir, requests_two, nontext_repeat=5)
    _, both = run(tiny_llava_dir, requests_two, prune_ratio=0.5, nontext_repeat=3)
    for (_, p), (_, r), (_, b), images in zip(plain, repeated, both, (1, 2)):
        assert r["stats"]["counts"][1] == 5 * p["stats"]["counts"][1] == 5 * 25 * images
        assert r["stats"]["counts"][0] == p["stats"]["counts"][0], "text is unchanged"
        assert b["stats"]["counts"][1] == 3 * 13 * images  # prune (25 -> 13 per image), then repeat
        assert b["settings"]["nontext_kept"] == 13 * images and b["settings"]["nontext_repeat"] == 3


def test_pruned_batch_equals_single(tiny_llava_dir, requests_two):
    assert_batch_equals_single(LlavaHfTextdom, tiny_llava_dir, requests_two, prune_ratio=0.5, nontext_repeat=2)


@pytest.mark.parametrize(
    "args,message",
    [
        ({"prune_ratio": 1.0}, r"prune_ratio=1.0 is invalid; it must be a number with 0 <= r < 1"),
        ({"prune_ratio": -0.25}, r"prune_ratio=-0.25 is invalid"),
        ({"nontext_repeat": 0}, r"nontext_repeat=0 is invalid; it must be an integer k >= 1"),
        ({"nontext_repeat": 1.5}, r"nontext_repeat=1.5 is invalid: expected an integer"),
    ],
)
def test_bad_values_fail_at_construction(tmp_path, args, message):
    with pytest.raises(UsageError, match=message):
        LlavaHfTextdom(pretrained=str(tmp_path / "never-loaded"), **args)


def test_pruning_a_tower_without_cls_fails_at_construction(tmp_path):
    from transformers import LlamaConfig, LlavaConfig, SiglipVisionConfig

    text = LlamaConfig(num_hidden_layers=1, hidden_size=8, intermediate_size=8, num_attention_heads=2, vocab_size=64)
    vision = SiglipVisionConfig(hidden_size=8, intermediate_size=8, num_hidden_layers=1, num_attention_heads=2, image_size=12, patch_size=6)
    LlavaConfig(vision_config=vision, text_config=text, image_token_id=3).save_pretrained(tmp_path)
    with pytest.raises(UsageError, match="prune_ratio needs a vision tower with a \\[CLS\\] token .* 'siglip_vision_model'"):
        LlavaHfTextdom(pretrained=str(tmp_path), device="cpu", prune_ratio=0.5)
