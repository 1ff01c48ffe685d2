"""qwen2_5_vl_textdom inputs, processor loading and the probe against eager attention."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import AutoProcessor

from lmms_textdom.core.errors import UsageError
from lmms_textdom.core.modality import classify_tokens
from lmms_textdom.models.base import Request
from lmms_textdom.models.qwen2_5_vl.adapter import Qwen25VLTextdom
from lmms_textdom.core.probe import AttentionProbe, output_lengths
from lmms_textdom.models.qwen2_5_vl.inputs import build_inputs, video_patches
from lmms_textdom.models.qwen2_5_vl.processor import IMAGE_TOKEN, VIDEO_TOKEN, ImageOnlyQwenProcessor, load_qwen_processor
from lmms_textdom.media.video import sample_video
from tests.conftest import random_image
from tests.oracle import eager_class_masses

NEW_TOKENS = 6
FRAME_PIXELS = dict(video_min_pixels=28 * 28, video_max_pixels=56 * 84)


def chat(processor, kinds, question):
    content = [{"type": kind} for kind in kinds] + [{"type": "text", "text": question}]
    return processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True)


def test_image_inputs_equal_the_stock_processor(tiny_qwen):
    _, processor = tiny_qwen
    prompts = [chat(processor, ["image"], "what is shown ?"), chat(processor, ["image", "image"], "which option is correct ?")]
    images = [random_image(1, 112), random_image(2, 56).resize((84, 56)), random_image(3, 90).resize((60, 90))]
    stock = processor(text=prompts, images=images, return_tensors="pt", padding=True)
    ours = build_inputs(processor, prompts, images)
    assert (stock["attention_mask"][0] == 0).any(), "the batch must be padded"
    assert set(stock) == set(ours)
    for key in stock:
        assert torch.equal(stock[key], ours[key]), key


def test_video_patches_pair_frames_in_the_image_processors_patch_order(tiny_qwen):
    _, processor = tiny_qwen
    image_processor = processor.image_processor
    size = {"shortest_edge": 28 * 28, "longest_edge": 56 * 84}
    frames = [random_image(i, 56).resize((84, 56)) for i in range(3)]
    patches, grid = video_patches(image_processor, frames, 28 * 28, 56 * 84)
    assert grid == [2, 4, 6]  # 3 frames: the last one repeated to fill the second temporal patch
    # a still image is one temporal patch holding the same frame twice
    still = [image_processor(images=[f], size=size, return_tensors="pt")["pixel_values"].view(24, 3, 2, 196) for f in frames]
    ours = patches.view(2, 24, 3, 2, 196)
    for step, (first, second) in enumerate([(0, 1), (2, 2)]):
        assert torch.equal(ours[step, :, :, 0], still[first][:, :, 0])
        assert torch.equal(ours[step, :, :, 1], still[second][:, :, 0])
    doubled, _ = video_patches(image_processor, [frames[0], frames[0]], 28 * 28, 56 * 84)
    assert torch.equal(doubled, still[0].reshape(24, -1))


def test_video_inputs_carry_grid_time_spacing_and_placeholders(tiny_qwen, tiny_videos):
    _, processor = tiny_qwen
    video = sample_video(tiny_videos[0])  # 8 frames of a 3 s clip
    inputs = build_inputs(processor, [chat(processor, ["video"], "describe the video")], videos=[video], video_pixels=(784, 56 * 84))
    assert inputs["video_grid_thw"].tolist() == [[4, 4, 6]]
    assert inputs["pixel_values_videos"].shape == (4 * 24, 3 * 2 * 14 * 14)
    assert inputs["second_per_grid_ts"].tolist() == pytest.approx([2 / (8 / 3)])
    video_id = processor.tokenizer.convert_tokens_to_ids(VIDEO_TOKEN)
    assert int((inputs["input_ids"] == video_id).sum()) == 4 * 24 // 4
    assert torch.equal(inputs["mm_token_type_ids"], 2 * (inputs["input_ids"] == video_id).long())
    with pytest.raises(ValueError, match="hold 0 image and 1 video placeholders for 1 images and 1 videos"):
        build_inputs(processor, [chat(processor, ["video"], "x")], images=[random_image(1, 56)], videos=[video])


def test_saved_processor_loads_through_the_fallback(tiny_qwen, tiny_qwen_dir):
    _, processor = tiny_qwen
    # without torchvision AutoProcessor cannot build this processor: it hands back a bare tokenizer
    assert not hasattr(AutoProcessor.from_pretrained(tiny_qwen_dir), "image_processor")
    loaded = load_qwen_processor(str(tiny_qwen_dir))
    assert isinstance(loaded, ImageOnlyQwenProcessor)
    assert loaded.chat_template == processor.chat_template
    prompt = chat(processor, ["image"], "what is shown ?")
    a = build_inputs(loaded, [prompt], [random_image(4, 100)])
    b = build_inputs(processor, [prompt], [random_image(4, 100)])
    assert all(torch.equal(a[k], b[k]) for k in b)
    assert loaded.image_token == IMAGE_TOKEN and loaded.video_token_id == processor.video_token_id


def assert_probe_matches_eager(model, inputs, classes):
    with AttentionProbe(model, classes) as probe:
        out = model.generate(**inputs, max_new_tokens=NEW_TOKENS, do_sample=False)
    prompt_len = inputs["input_ids"].shape[1]
    lengths = output_lengths(out[:, prompt_len:], model.generation_config.eos_token_id, model.generation_config.pad_token_id)
    sequences, expected = eager_class_masses(model, inputs, classes.ids, len(classes.names), lengths, NEW_TOKENS)
    assert torch.equal(sequences, out), "eager and probed generation chose different tokens"
    stats = probe.stats(lengths)
    for s, ref in zip(stats, expected):
        np.testing.assert_allclose(np.column_stack([s.mass, s.generated]), ref, atol=1e-5, rtol=0)
    return stats


def test_probe_matches_eager_on_a_padded_image_batch(tiny_qwen):
    model, processor = tiny_qwen
    prompts = [chat(processor, ["image"], "what is shown in the image ?"), chat(processor, ["image", "image"], "which ?")]
    inputs = build_inputs(processor, prompts, [random_image(1, 112), random_image(2, 56), random_image(3, 84)])
    classes = classify_tokens(inputs["input_ids"], {"image": model.config.image_token_id}, inputs["attention_mask"])
    stats = assert_probe_matches_eager(model, inputs, classes)
    assert [s.counts[1] for s in stats] == [16, 4 + 9]


def test_probe_matches_eager_on_video_with_an_image(tiny_qwen, tiny_videos):
    model, processor = tiny_qwen
    prompts = [chat(processor, ["video"], "describe the video"), chat(processor, ["image", "video"], "what changes ?")]
    videos = [sample_video(tiny_videos[0]), sample_video(tiny_videos[1], fps=2.0)]
    inputs = build_inputs(processor, prompts, [random_image(5, 56)], videos, video_pixels=(784, 56 * 84))
    config = model.config
    classes = classify_tokens(inputs["input_ids"], {"image": config.image_token_id, "video": config.video_token_id}, inputs["attention_mask"])
    stats = assert_probe_matches_eager(model, inputs, classes)
    # 8 frames of 56 x 84 -> 4 x (2 x 3); 7 frames of 56 x 56 -> 4 x (2 x 2)
    assert [s.counts[1:] for s in stats] == [(0, 24), (1 * 4, 16)]


def test_adapter_records_frames_order_and_settings(tiny_qwen_dir, qwen_requests):
    adapter = Qwen25VLTextdom(pretrained=str(tiny_qwen_dir), device="cpu", max_frames=4, **FRAME_PIXELS)
    prepared = adapter.prepare(qwen_requests)
    # qwen-vl-utils: linspace(0, n - 1, 4) rounded half to even, both ends taken (24 and 37 frames)
    assert prepared.sample_settings == [
        {"content_order": ["image", "text"]},
        {"content_order": ["text", "video"], "video_frames": [[0, 8, 15, 23]], "video_fps": [pytest.approx(4 / 3.0)]},
        {"content_order": ["text", "image", "video"], "video_frames": [[0, 12, 24, 36]], "video_fps": [pytest.approx(4 / 3.7)]},
    ]
    assert prepared.classes.names == ("text", "image", "video")
    settings = adapter.settings()
    assert (settings["max_frames"], settings["frame_sampling"], settings["video_order"]) == (4, "qwen_vl_utils", "text_first")
    assert settings["prune_method"] is None
    # the question precedes the video in the prompt itself
    ids, video_id = prepared.inputs["input_ids"][1], adapter.model.config.video_token_id
    question = adapter.processor.tokenizer(qwen_requests[1].context)["input_ids"]
    first_video = int((ids == video_id).nonzero()[0])
    text_before = adapter.processor.tokenizer.decode(ids[:first_video])
    assert qwen_requests[1].context in text_before and len(question) > 0


def test_frames_as_images_and_video_first_are_options(tiny_qwen_dir, qwen_requests):
    adapter = Qwen25VLTextdom(
        pretrained=str(tiny_qwen_dir), device="cpu", max_frames=4, frame_sampling="vlmevalkit_images", video_order="video_first", **FRAME_PIXELS
    )  # fmt: skip
    prepared = adapter.prepare(qwen_requests[1:])
    assert prepared.sample_settings == [
        {"content_order": ["video", "text"], "video_frames": [[4, 9, 14, 19]], "video_fps": [pytest.approx(4 / 3.0)]},
        {"content_order": ["image", "video", "text"], "video_frames": [[7, 14, 22, 29]], "video_fps": [pytest.approx(4 / 3.7)]},
    ]
    ids = prepared.inputs["input_ids"][0]
    last_video = int((ids == adapter.model.config.video_token_id).nonzero()[-1])
    assert qwen_requests[1].context in adapter.processor.tokenizer.decode(ids[last_video:])


def test_video_time_spacing_stays_float32_under_bfloat16(tiny_qwen_dir, qwen_requests):
    adapter = Qwen25VLTextdom(pretrained=str(tiny_qwen_dir), device="cpu", dtype="bfloat16", **FRAME_PIXELS)
    inputs = adapter._to_device(adapter.prepare(qwen_requests[1:2]).inputs)
    assert inputs["pixel_values_videos"].dtype == torch.bfloat16
    # 2 / (8 frames / 3 s) = 0.75 s per temporal patch; bfloat16 would round other spacings
    assert inputs["second_per_grid_ts"].dtype == torch.float32
    ((_, payload),) = adapter._run_batch(qwen_requests[1:2])
    payload = json.loads(payload)
    assert payload["settings"]["dtype"] == "bfloat16" and payload["stats"]["rows"] > 0
    assert np.isfinite(payload["stats"]["mass"]).all() and payload["stats"]["counts"][2] == 24


@pytest.mark.parametrize(
    "args,message",
    [
        ({"max_frames": 0}, r"max_frames=0 is invalid; it must be an integer >= 1"),
        ({"fps": -1}, r"fps=-1 is invalid; it must be a number > 0"),
        ({"video_max_pixels": 100}, r"video_max_pixels=100 is invalid; it must be an integer >= 784"),
        ({"prune_ratio": 1.0}, r"prune_ratio=1.0 is invalid; it must be a number with 0 <= r < 1"),
        ({"video_min_pixels": 5000, "video_max_pixels": 4000}, r"video_min_pixels=5000 exceeds video_max_pixels=4000"),
    ],
)
def test_bad_model_args_fail_at_construction(tmp_path, args, message):
    with pytest.raises(UsageError, match=message):
        Qwen25VLTextdom(pretrained=str(tmp_path / "never-loaded"), **args)


def test_other_checkpoints_and_visuals_are_refused(tiny_llava_dir, tiny_qwen_dir):
    with pytest.raises(UsageError, match="loads Qwen2.5-VL checkpoints .* model_type 'llava'"):
        Qwen25VLTextdom(pretrained=str(tiny_llava_dir), device="cpu")
    adapter = Qwen25VLTextdom(pretrained=str(tiny_qwen_dir), device="cpu")
    with pytest.raises(UsageError, match="takes PIL images and video file paths; got a ndarray"):
        adapter.prepare([Request("x", [np.zeros((4, 4, 3))], {}, {})])
