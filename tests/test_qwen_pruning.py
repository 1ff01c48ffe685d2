"""Pruning without [CLS] (attention received) and replication for qwen2_5_vl_textdom, against independent computations."""

from __future__ import annotations

import pytest
import torch

from lmms_textdom.models.qwen2_5_vl.adapter import Qwen25VLTextdom
from lmms_textdom.editing.pruning import kept_count
from lmms_textdom.models.qwen2_5_vl.inputs import build_inputs
from lmms_textdom.models.qwen2_5_vl.processor import IMAGE_TOKEN, VIDEO_TOKEN
from lmms_textdom.editing.received_attention import ReceivedAttentionScorer
from lmms_textdom.media.video import sample_video
from tests.adapter_runs import assert_batch_equals_single, run_adapter
from tests.conftest import random_image
from tests.oracle import eager_received_scores

NEW_TOKENS = 6  # as the qwen_requests fixture asks
FRAME_PIXELS = dict(video_min_pixels=28 * 28, video_max_pixels=56 * 84)


def test_received_scores_equal_eager_vision_attention(tiny_qwen, tiny_videos):
    model, processor = tiny_qwen
    visual = model.model.visual
    assert model.config.vision_config._attn_implementation == "sdpa"
    assert max(visual.fullatt_block_indexes) < len(visual.blocks) - 1, "the scored block must not simply be the last"
    images = build_inputs(processor, [IMAGE_TOKEN * 2], [random_image(1, 112), random_image(2, 56).resize((84, 56))])
    video = build_inputs(processor, [VIDEO_TOKEN], videos=[sample_video(tiny_videos[0])], video_pixels=(784, 56 * 84))
    scorer = ReceivedAttentionScorer(visual)
    for pixels, grid in ((images["pixel_values"], images["image_grid_thw"]), (video["pixel_values_videos"], video["video_grid_thw"])):
        with scorer.recording():
            features = visual(pixels, grid_thw=grid).pooler_output  # the tower keeps its sdpa attention
        expected = eager_received_scores(visual, pixels, grid)
        assert [s.shape[0] for s in scorer.scores] == [int(g.prod()) // 4 for g in grid]
        assert sum(s.shape[0] for s in scorer.scores) == features.shape[0]
        for ours, reference in zip(scorer.scores, expected):
            torch.testing.assert_close(ours.double(), reference, atol=1e-5, rtol=1e-6)


def adapter_for(checkpoint, **model_args):
    return Qwen25VLTextdom(pretrained=str(checkpoint), device="cpu", **FRAME_PIXELS, **model_args)


def run(checkpoint, requests, **model_args):
    return run_adapter(Qwen25VLTextdom, checkpoint, requests, **FRAME_PIXELS, **model_args)


def test_edit_path_without_pruning_equals_the_stock_path(tiny_qwen_dir, qwen_requests):
    adapter = adapter_for(tiny_qwen_dir)
    prepared = adapter.prepare(qwen_requests)
    edited = adapter.edited_inputs(prepared.inputs, prepared.classes)  # keeps every token, repeat 1
    assert "input_ids" not in edited.inputs and edited.inputs["position_ids"].shape[0] == 4
    stock = adapter.model.generate(**prepared.inputs, max_new_tokens=NEW_TOKENS, do_sample=False)
    ours = adapter.model.generate(**edited.inputs, max_new_tokens=NEW_TOKENS, do_sample=False)
    assert torch.equal(stock[:, prepared.inputs["input_ids"].shape[1] :], ours)
    assert torch.equal(edited.classes.ids, prepared.classes.ids)


def hand_positions(ids: torch.Tensor, start: int, grid: list[int], kept: list[int], interval: float) -> torch.Tensor:
    """(4, 1, n) positions written out from Qwen2.5-VL's rule for one visual at ``start`` with kept tokens.

    Text counts up; merged token (t, r, c) of the visual sits at (start + int(t * interval),
    start + r, start + c); text after it resumes at start + max(h, w) of the merged grid.
    """
    height, width = grid[1] // 2, grid[2] // 2
    columns = [(i, i, i) for i in range(start)]
    for k in kept:
        t, r, c = k // (height * width), k % (height * width) // width, k % width
        columns.append((start + int(t * interval), start + r, start + c))
    resume = start + max(height, width)
    columns += [(resume + i,) * 3 for i in range(ids.shape[1] - len(columns))]
    rotary = torch.tensor(columns).T[:, None, :]
    return torch.cat([torch.arange(ids.shape[1]).view(1, 1, -1), rotary])


@pytest.mark.parametrize("which,kind", [(0, "image"), (1, "video")])
def test_pruned_generation_equals_hand_fed_kept_tokens(tiny_qwen_dir, qwen_requests, which, kind):
    request = qwen_requests[which]
    adapter, ((text, payload),) = run(tiny_qwen_dir, [request], prune_ratio=0.6)
    model, processor, config = adapter.model, adapter.processor, adapter.model.config
    # by hand: the processor's pixels, eager vision attention for the scores, the model's own features
    token = IMAGE_TOKEN if kind == "image" else VIDEO_TOKEN
    videos = [adapter.video(request.visuals[0])] if kind == "video" else []
    full = build_inputs(processor, [token], [] if videos else request.visuals, videos, video_pixels=(784, 56 * 84))
    pixels, grid = (full["pixel_values"], full["image_grid_thw"]) if kind == "image" else (full["pixel_values_videos"], full["video_grid_thw"])
    (scores,) = eager_received_scores(model.model.visual, pixels, grid)
    m = kept_count(scores.shape[0], 0.6)
    kept = sorted(torch.argsort(scores, descending=True)[:m].tolist())
    encode = model.model.get_image_features if kind == "image" else model.model.get_video_features
    features = encode(pixels, grid).pooler_output[0][kept]
    ids = processor.tokenizer(adapter.prompt(request.context, [kind]).replace(token, token * m), return_tensors="pt")["input_ids"]
    embeds = model.get_input_embeddings()(ids)
    embeds[ids == processor.tokenizer.convert_tokens_to_ids(token)] = features
    start = int((ids[0] == processor.tokenizer.convert_tokens_to_ids(token)).nonzero()[0])
    interval = config.vision_config.tokens_per_second * float(full["second_per_grid_ts"][0]) if videos else 1.0
    positions = hand_positions(ids, start, grid[0].tolist(), kept, interval)
    by_hand = model.generate(
        inputs_embeds=embeds, attention_mask=torch.ones_like(ids), position_ids=positions, max_new_tokens=NEW_TOKENS, do_sample=False
    )
    assert text == processor.tokenizer.decode(by_hand[0], skip_special_tokens=True)
    prepared = adapter.prepare([request])
    assert torch.equal(prepared.inputs["position_ids"], positions), "M-RoPE positions of the kept columns"
    column = 2 if kind == "video" else 1
    assert payload["stats"]["counts"][column] == m == payload["settings"]["nontext_kept"] < scores.shape[0]
    expected = {"prune_method": "received", "prune_ratio": 0.6, "nontext_repeat": 1, "nontext_original": scores.shape[0]}
    assert {k: payload["settings"][k] for k in expected} == expected


def test_replication_counts_and_positions(tiny_qwen_dir, qwen_requests):
    adapter, plain = run(tiny_qwen_dir, qwen_requests)
    _, repeated = run(tiny_qwen_dir, qwen_requests, nontext_repeat=3)
    _, both = run(tiny_qwen_dir, qwen_requests, prune_ratio=0.5, nontext_repeat=2)
    for (_, p), (_, r), (_, b) in zip(plain, repeated, both):
        counts, nontext = p["stats"]["counts"], sum(p["stats"]["counts"][1:])
        assert r["stats"]["counts"] == [counts[0], 3 * counts[1], 3 * counts[2]], "text unchanged, visuals x3"
        assert b["settings"]["nontext_original"] == nontext
        assert sum(b["stats"]["counts"][1:]) == 2 * b["settings"]["nontext_kept"]
        assert b["settings"]["nontext_kept"] < nontext
    # a repeated video's copies carry the same 3-D positions, text after it keeps its own
    prepared = adapter_for(tiny_qwen_dir, nontext_repeat=2).prepare(qwen_requests[1:2])
    stock = adapter.prepare(qwen_requests[1:2])
    video = stock.classes.ids[0] == 2
    copies = prepared.inputs["position_ids"][1:, 0][:, prepared.classes.ids[0] == 2]
    positions, _ = adapter.model.model.get_rope_index(
        stock.inputs["input_ids"], mm_token_type_ids=stock.inputs["mm_token_type_ids"],
        video_grid_thw=stock.inputs["video_grid_thw"], second_per_grid_ts=stock.inputs["second_per_grid_ts"],
    )  # fmt: skip
    assert torch.equal(copies, positions[:, 0, video].repeat(1, 2))
    assert torch.equal(prepared.inputs["position_ids"][1:, 0, -5:], positions[:, 0, -5:])
    assert torch.equal(prepared.inputs["position_ids"][0, 0], torch.arange(prepared.classes.length))


def test_pruned_batch_equals_single(tiny_qwen_dir, qwen_requests):
    assert_batch_equals_single(Qwen25VLTextdom, tiny_qwen_dir, qwen_requests, **FRAME_PIXELS, prune_ratio=0.5, nontext_repeat=2)
