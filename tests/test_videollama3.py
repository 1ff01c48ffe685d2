"""videollama3_textdom: DAMO-layout loading, the encoder against the original's semantics, the original's
frame sampling, token compression and prompt, probe vs eager, bad input."""

from __future__ import annotations

import copy
import functools
import json
import math
import shutil
from fractions import Fraction

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file, save_file
from transformers import LogitsProcessor, LogitsProcessorList

from lmms_textdom.core.errors import UsageError
from lmms_textdom.core.probe import AttentionProbe, output_lengths
from lmms_textdom.editing.pruning import kept_count
from lmms_textdom.models.base import Request
from lmms_textdom.models.videollama3.adapter import VideoLlama3Textdom
from lmms_textdom.models.videollama3.checkpoint import IMAGE_PAD, VIDEO_PAD
from lmms_textdom.models.videollama3.frames import Clip, sample_clip
from lmms_textdom.models.videollama3.inputs import encode_batch, target_sizes, video_text
from lmms_textdom.tiny.videos import write_video
from tests.conftest import LATE_START_CLIPS, random_image
from tests.oracle import eager_class_masses

NEW_TOKENS = 5


@pytest.fixture(scope="module")
def damo_dir(tmp_path_factory):
    from lmms_textdom.tiny.videollama3 import save_videollama3

    return save_videollama3(tmp_path_factory.mktemp("ckpt") / "tiny-videollama3-damo", layout="damo")


@pytest.fixture(scope="module")
def adapter(damo_dir):
    return VideoLlama3Textdom(pretrained=str(damo_dir), device="cpu")


@pytest.fixture(scope="module")
def clip_path(tmp_path_factory):
    """37 frames at 10 fps (3.7 s), every frame different."""
    return write_video(tmp_path_factory.mktemp("videos") / "clip.mp4", 37, (56, 84), 10)


# ----- checkpoint -----------------------------------------------------------------------------------


def test_damo_layout_loads_every_tensor_into_the_native_classes(damo_dir, adapter):
    damo = load_file(str(damo_dir / "model.safetensors"))
    assert any(k.startswith("model.vision_encoder.") for k in damo) and any(k.startswith("model.mm_projector.") for k in damo)
    native = adapter.model.state_dict()
    assert len(native) == len(damo)
    renamed = {
        k.replace("model.vision_encoder.", "model.vision_model.").replace("model.mm_projector.", "model.projector.")
        .replace("model.embed_tokens", "model.language_model.embed_tokens").replace("model.layers.", "model.language_model.layers.")
        .replace("model.norm.", "model.language_model.norm."): v
        for k, v in damo.items()
    }  # fmt: skip
    assert set(renamed) == set(native)
    assert all(torch.equal(native[k], v) for k, v in renamed.items())


@pytest.mark.parametrize("change", ["extra", "missing"])
def test_a_tensor_left_over_or_missing_fails_loudly(damo_dir, tmp_path, change):
    folder = shutil.copytree(damo_dir, tmp_path / "changed")
    weights = load_file(str(folder / "model.safetensors"))
    if change == "extra":
        weights["model.vision_encoder.head.weight"] = torch.zeros(2, 2)
    else:
        weights.pop("model.mm_projector.readout.2.bias")
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(UsageError, match="unexpected_keys" if change == "extra" else "missing_keys"):
        VideoLlama3Textdom(pretrained=str(folder), device="cpu")


def test_native_layout_loads_the_same_model(damo_dir, adapter, tmp_path):
    from lmms_textdom.tiny.videollama3 import save_videollama3

    native = VideoLlama3Textdom(pretrained=str(save_videollama3(tmp_path / "native", layout="native")), device="cpu")
    ours, theirs = adapter.model.state_dict(), native.model.state_dict()
    assert set(ours) == set(theirs) and all(torch.equal(ours[k], theirs[k]) for k in ours)


# ----- encoder vs the original's semantics ------------------------------------------------------------


def original_features(weights: dict, config: dict, frames: np.ndarray, merge: int) -> torch.Tensor:
    """DAMO's encoder + projector written from its semantics, float64: ``frames`` (t, C, H, W) normalised pixels.

    Patches in the original processor's order (t, h/m, w/m, m, m, C, p, p); 2-D rotary with the height
    frequencies then the width frequencies, each repeated twice; one attention block per frame
    (an explicit block-diagonal mask); post-LN; merge = mean of each m x m group; Linear-GELU-Linear.
    """
    w = {k: v.double() for k, v in weights.items()}
    vision = config["vision_encoder_config"]
    p, dim, heads = vision["patch_size"], vision["hidden_size"], vision["num_attention_heads"]
    head_dim = dim // heads
    t, c, height, width = frames.shape
    h, wd = height // p, width // p
    patches = frames.reshape(t, c, h // merge, merge, p, wd // merge, merge, p).transpose(0, 2, 5, 3, 6, 1, 4, 7)
    x = torch.from_numpy(np.ascontiguousarray(patches).reshape(-1, c, p, p)).double()
    pre = "model.vision_encoder."
    x = F.conv2d(x, w[pre + "embeddings.patch_embedding.weight"], w[pre + "embeddings.patch_embedding.bias"]).view(-1, dim)
    rows = torch.arange(h)[:, None].expand(h, wd).reshape(h // merge, merge, wd // merge, merge).permute(0, 2, 1, 3).flatten()
    cols = torch.arange(wd)[None, :].expand(h, wd).reshape(h // merge, merge, wd // merge, merge).permute(0, 2, 1, 3).flatten()
    inv_freq = 1.0 / 10000 ** (torch.arange(0, head_dim // 2, 2, dtype=torch.float64) / (head_dim // 2))
    angles = torch.cat([rows[:, None] * inv_freq, cols[:, None] * inv_freq], dim=-1).repeat(t, 1)
    cos, sin = angles.cos().repeat(1, 2)[:, None], angles.sin().repeat(1, 2)[:, None]

    def rotate(v):
        half = v.shape[-1] // 2
        return v * cos + torch.cat([-v[..., half:], v[..., :half]], dim=-1) * sin

    frame_of = torch.arange(t).repeat_interleave(h * wd)
    allowed = frame_of[:, None] == frame_of[None, :]

    def linear(name, v):
        return v @ w[name + ".weight"].T + w[name + ".bias"]

    for i in range(vision["num_hidden_layers"]):
        layer = f"{pre}encoder.layers.{i}."
        y = F.layer_norm(x, (dim,), w[layer + "layer_norm1.weight"], w[layer + "layer_norm1.bias"], 1e-6)
        q, k, v = (linear(layer + f"self_attn.{n}_proj", y).view(-1, heads, head_dim) for n in "qkv")
        q, k = rotate(q), rotate(k)
        scores = torch.einsum("qhd,khd->hqk", q, k) / head_dim**0.5
        probs = scores.masked_fill(~allowed, float("-inf")).softmax(-1)
        x = x + linear(layer + "self_attn.out_proj", torch.einsum("hqk,khd->qhd", probs, v).reshape(-1, dim))
        y = F.layer_norm(x, (dim,), w[layer + "layer_norm2.weight"], w[layer + "layer_norm2.bias"], 1e-6)
        x = x + linear(layer + "mlp.fc2", F.gelu(linear(layer + "mlp.fc1", y), approximate="tanh"))
    x = F.layer_norm(x, (dim,), w[pre + "post_layernorm.weight"], w[pre + "post_layernorm.bias"], 1e-6)
    x = x.view(t * (h // merge) * (wd // merge), merge * merge, dim).mean(1)
    return linear("model.mm_projector.readout.2", F.gelu(linear("model.mm_projector.readout.0", x)))


def normalised_pixels(images) -> np.ndarray:
    return np.stack([(np.asarray(i, dtype=np.float64) / 255 - 0.5) / 0.5 for i in images]).transpose(0, 3, 1, 2)


def test_features_equal_the_original_encoder(damo_dir, adapter, tmp_path):
    weights = load_file(str(damo_dir / "model.safetensors"))
    config = json.loads((damo_dir / "config.json").read_text())
    # sizes on the 14 / 28 grid and above the 16-token minimum: nothing is resized
    image = random_image(4, 56).resize((84, 56))
    clip = sample_clip(write_video(tmp_path / "clip.mp4", 30, (112, 140), 10))
    encoded = encode_batch(adapter.tokenizer, [("a", [image]), ("b", [clip])])
    model = copy.deepcopy(adapter.model).double()
    inputs = {k: v.double() if v.is_floating_point() else v for k, v in encoded.inputs.items()}
    with torch.no_grad():
        image_features = model.model.get_image_features(inputs["pixel_values"], inputs["image_grid_thw"], inputs["image_merge_sizes"])
        video_features = model.model.get_video_features(inputs["pixel_values_videos"], inputs["video_grid_thw"], inputs["video_merge_sizes"])
    assert inputs["image_merge_sizes"].tolist() == [1] and inputs["video_merge_sizes"].tolist() == [2]
    expected_image = original_features(weights, config, normalised_pixels([image]), merge=1)
    expected_video = original_features(weights, config, normalised_pixels(clip.frames), merge=2)
    assert expected_image.shape[0] == 4 * 6 and expected_video.shape[0] == 3 * 4 * 5
    torch.testing.assert_close(torch.cat(image_features.pooler_output), expected_image, atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.cat(video_features.pooler_output), expected_video, atol=1e-5, rtol=0)


# ----- compression, frames, prompt ----------------------------------------------------------------------


def test_the_token_budget_is_shared_as_the_original_shares_it():
    # 180 frames of 720 x 1280 at merge 2 share 16384 * 28^2 pixels: 71,361 each, scale sqrt(921600 / 71361)
    beta = math.sqrt(720 * 1280 / (16384 * 28 * 28 // 180))
    assert target_sizes([(180, 720, 1280)], [2]) == [(math.floor(720 / beta / 28) * 28, math.floor(1280 / beta / 28) * 28)] == [(196, 336)]
    # two 1000 x 1000 images at merge 1: 71 x 71 patches each (8192 tokens allowed each), rounded, not shrunk
    assert target_sizes([(1, 1000, 1000), (1, 1000, 1000)], [1, 1]) == [(994, 994), (994, 994)]
    assert target_sizes([(1, 3000, 3000)], [1]) == [(1792, 1792)]  # 128 x 128 = 16384 tokens
    # tiny frames grow to the 16-token minimum: 56 x 84 -> 112 x 140
    assert target_sizes([(3, 56, 84)], [2]) == [(112, 140)]
    # an image with a video: one scale for all when the tokens (ceil per side) exceed the budget
    mixed = target_sizes([(1, 2000, 2000), (100, 560, 560)], [1, 2])
    beta = math.sqrt((143 * 143 + 100 * 20 * 20) / 16384)
    assert mixed == [(math.floor(2000 / beta / 14) * 14,) * 2, (math.floor(560 / beta / 28) * 28,) * 2]


def static_and_moving_frames() -> list[Image.Image]:
    """112 x 140 frames (4 x 5 tokens, no resize): a fixed textured background, a square that moves, and a
    frame that repeats the one before."""
    background = (np.random.default_rng(7).random((112, 140, 3)) * 255).astype(np.uint8)
    frames = []
    for left in (0, 14, 14, 42):  # frame 2 == frame 1: nothing changes
        pixels = background.copy()
        pixels[10:24, left : left + 14] = 255
        frames.append(Image.fromarray(pixels))
    return frames


def independent_compression_mask(frames: list[Image.Image], threshold: float = 0.1) -> torch.Tensor:
    """The original rule on 28 x 28 pixel blocks of bfloat16-rounded normalised pixels, block by block."""
    pixels = torch.from_numpy(normalised_pixels(frames)).to(torch.bfloat16).double()  # (t, C, H, W)
    t, _, height, width = pixels.shape
    keep = torch.zeros(t, height // 28, width // 28, dtype=torch.bool)
    keep[0] = True
    for f in range(1, t):
        for r in range(height // 28):
            for c in range(width // 28):
                block = (pixels[f] - pixels[f - 1])[:, r * 28 : (r + 1) * 28, c * 28 : (c + 1) * 28]
                keep[f, r, c] = block.abs().mean() * 255 > threshold
        if not keep[f].any():
            keep[f, 0, 0] = True  # at least one token per frame: the first
    return keep.flatten()


def test_compression_mask_equals_the_original_rule_and_the_prompt_holds_only_kept_tokens(adapter):
    frames = static_and_moving_frames()
    clip = Clip(frames, [0, 1, 2, 3], [0.0, 1.0, 2.0, 3.0])
    encoded = encode_batch(adapter.tokenizer, [("what moves ?", [clip])])
    mask = encoded.inputs["video_compression_mask"]
    expected = independent_compression_mask(frames)
    assert torch.equal(mask, expected)
    per_frame = expected.view(4, -1).sum(1).tolist()
    assert per_frame[0] == 20 and 0 < per_frame[1] < 20 and per_frame[2] == 1 and per_frame[3] < 20, per_frame
    assert encoded.frame_tokens == per_frame
    video_id = adapter.tokenizer.convert_tokens_to_ids(VIDEO_PAD)
    assert int((encoded.inputs["input_ids"] == video_id).sum()) == int(expected.sum())
    prompt = adapter.tokenizer.decode(encoded.inputs["input_ids"][0])
    assert "what moves ?" + ",".join(f"Time {k}.0s:" + VIDEO_PAD * n for k, n in enumerate(per_frame)) + "\n<|im_end|>" in prompt
    off = encode_batch(adapter.tokenizer, [("what moves ?", [clip])], compress=False)
    assert off.inputs["video_compression_mask"].all() and off.frame_tokens == [20] * 4


def ffmpeg_fps_frames(path, fps: float) -> list[np.ndarray]:
    """The frames FFmpeg's own ``fps`` filter (round=down, as the original calls it) emits, through PyAV,
    fed as the ffmpeg command line feeds it: every timestamp minus the file's start time (its default
    input offset), rounded to the stream's time base."""
    import av

    frames = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        shift = round(Fraction(container.start_time or 0, 1_000_000) / stream.time_base)
        graph = av.filter.Graph()
        source, sink = graph.add_buffer(template=stream), graph.add("buffersink")
        rate = graph.add("fps", f"fps={fps}:round=down")
        source.link_to(rate)
        rate.link_to(sink)
        graph.configure()
        for frame in [*container.decode(stream), None]:
            if frame is not None:
                frame.pts -= shift
            graph.push(frame)
            while True:
                try:
                    frames.append(graph.pull().to_ndarray(format="rgb24"))
                except (av.BlockingIOError, av.EOFError):
                    break
    return frames


@pytest.mark.parametrize("fps,max_frames", [(1.0, 180), (3.0, 180), (7.0, 4)])
def test_frames_and_timestamps_follow_ffmpegs_fps_filter(clip_path, fps, max_frames):
    clip = sample_clip(clip_path, fps, max_frames)
    reference = ffmpeg_fps_frames(clip_path, fps)
    assert len(reference) == int(3.7 * fps)
    chosen = np.linspace(0, len(reference) - 1, max_frames, dtype=int) if len(reference) > max_frames else np.arange(len(reference))
    assert len(clip.frames) == len(chosen)
    for frame, k, stamp in zip(clip.frames, chosen, clip.timestamps):
        np.testing.assert_array_equal(np.asarray(frame), reference[k])
        assert stamp == pytest.approx(k / fps)


def ffmpeg_cli_fps_reference(path, fps: float) -> list[int]:
    """Decoded frame numbers ``ffmpeg -i path -vf fps=fps:round=down`` emits, from its documented rules.

    The command line shifts every timestamp by minus the file's start time (no ``-copyts``), rounded to
    the stream's time base. The filter rounds each frame's time down to its 1/fps grid and, for every
    grid point from the first frame's to the end of the stream (last frame's time plus its duration,
    rounded down, exclusive), emits the latest frame whose rounded time is not after that point.
    """
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        shift = Fraction(container.start_time or 0, 1_000_000)
        shift = math.floor(shift / stream.time_base + Fraction(1, 2)) * stream.time_base
        decoded = [(frame.pts * stream.time_base - shift, frame.duration * stream.time_base) for frame in container.decode(stream)]
    rate = Fraction(fps)
    grid = [math.floor(t * rate) for t, _ in decoded]
    end = math.floor((decoded[-1][0] + decoded[-1][1]) * rate)
    return [max(k for k, point in enumerate(grid) if point <= n) for n in range(grid[0], end)]


#: the frames the original takes at fps 1 of the late-start clips (checked with ffmpeg 7 by issue 22)
ORIGINAL_FRAMES = {"24fps_from_0.583s": [23, 47, 71], "25fps_from_0.48s": [24, 49, 74], "24fps_from_0.583s_b_frames": [23, 47, 71]}


@pytest.mark.parametrize("name", sorted(ORIGINAL_FRAMES))
def test_a_video_that_starts_after_0_is_sampled_from_the_files_start(late_start_videos, name):
    path = late_start_videos[name]
    clip = sample_clip(path)
    assert clip.indices == ffmpeg_cli_fps_reference(path, 1.0) == ORIGINAL_FRAMES[name]
    reference = ffmpeg_fps_frames(path, 1.0)
    assert len(reference) == len(clip.frames)
    for frame, expected in zip(clip.frames, reference):
        np.testing.assert_array_equal(np.asarray(frame), expected)
    # announced from the video stream's own start time, one per 1/fps, as the original does
    _, fps, start_frame, _ = LATE_START_CLIPS[name]
    first = start_frame / fps
    assert clip.timestamps == pytest.approx([first + k for k in range(3)], abs=1e-3)
    assert video_text(clip.timestamps, [1, 1, 1]).startswith(f"Time {round(first, 1)}s:")


def test_prompt_timestamps_match_the_recorded_frames(adapter, clip_path):
    request = Request("describe the video", [str(clip_path)], {}, {"max_new_tokens": NEW_TOKENS})
    prepared = adapter.prepare([request])
    (record,) = prepared.sample_settings
    assert record["video_frames"] == [[9, 19, 29]]  # the last frame of each second, as FFmpeg's fps=1:round=down
    prompt = adapter.tokenizer.decode(prepared.inputs["input_ids"][0])
    assert [piece.split("s:")[0] for piece in prompt.split("Time ")[1:]] == ["0.0", "1.0", "2.0"]
    assert record["video_timestamps"] == [[0.0, 1.0, 2.0]]
    video = prepared.classes.names.index("video")
    assert prepared.classes.counts()[0][video] == record["video_tokens"][0] <= record["video_tokens_uncompressed"][0]


# ----- prompt layout ----------------------------------------------------------------------------------------


def damo_chat_template(messages: list[dict]) -> str:
    """DAMO's chat template (``chat_template.json`` of DAMO-NLP-SG/VideoLLaMA3-7B) restated, generation
    prompt added: each message is ``<|im_start|>{role}\n``, its content, ``<|im_end|>\n``. String content
    as it is; a content list piece by piece with no separator: text as it is, an image as its tokens and a
    newline, a video as ``Time {t rounded to 0.1}s:`` and the frame's tokens per frame, joined by ``,``,
    with a newline after the last frame."""
    out = []
    for message in messages:
        content = message["content"]
        if not isinstance(content, str):
            pieces = []
            for item in content:
                if item["type"] == "text":
                    pieces.append(item["text"])
                elif item["type"] == "image":
                    pieces.append(item["tokens"] + "\n")
                else:
                    frames = [f"Time {round(t, 1)}s:" + tokens for t, tokens in zip(item["timestamps"], item["frames"])]
                    pieces.append(",".join(frames) + "\n")
            content = "".join(pieces)
        out.append(f"<|im_start|>{message['role']}\n{content}<|im_end|>\n")
    return "".join(out) + "<|im_start|>assistant\n"


def rendered_prompt(prepared, tokenizer) -> str:
    return tokenizer.decode(prepared.inputs["input_ids"][0])


@pytest.mark.parametrize("video_order", ["text_first", "video_first"])
def test_video_samples_follow_vlmevalkits_message_or_lmms_evals_layout(damo_dir, adapter, clip_path, video_order):
    used = adapter if video_order == "text_first" else VideoLlama3Textdom(pretrained=str(damo_dir), device="cpu", video_order="video_first")
    question = "what happens in the video ?"
    prepared = used.prepare([Request(question, [str(clip_path)], {}, {})])
    (record,) = prepared.sample_settings
    (kept,), (stamps,) = record["video_tokens"], record["video_timestamps"]
    per_frame = prepared.inputs["video_compression_mask"].view(len(stamps), -1).sum(1).tolist()
    assert sum(per_frame) == kept
    video = {"type": "video", "timestamps": stamps, "frames": [VIDEO_PAD * n for n in per_frame]}
    text = {"type": "text", "text": question}
    if video_order == "text_first":  # VLMEvalKit's wrapper: its system message, then the message in order [question, video]
        messages = [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": [text, video]}]
    else:  # lmms-eval's videollama3: no system message, the video, then the question
        messages = [{"role": "user", "content": [video, text]}]
    assert rendered_prompt(prepared, used.tokenizer) == damo_chat_template(messages)
    assert record["content_order"] == (["text", "video"] if video_order == "text_first" else ["video", "text"])
    assert record["system_prompt"] == ("You are a helpful assistant." if video_order == "text_first" else None)
    assert used.settings()["video_order"] == video_order
    # the position classes follow the prompt: the question's tokens come before the video's in text_first
    classes = prepared.classes
    first_video = int((classes.ids[0] == classes.names.index("video")).nonzero()[0])
    task_positions = classes.subclasses["task"][0].nonzero().flatten()
    assert len(task_positions) >= 5 and bool((task_positions < first_video).all()) == (video_order == "text_first")


def test_image_samples_keep_visuals_then_text_without_a_system_turn(adapter):
    image = random_image(5, 56)
    prepared = adapter.prepare([Request("which option ?", [image], {}, {})])
    tokens = IMAGE_PAD * int(prepared.inputs["image_grid_thw"][0].prod())
    expected = damo_chat_template([{"role": "user", "content": [{"type": "image", "tokens": tokens}, {"type": "text", "text": "which option ?"}]}])
    assert rendered_prompt(prepared, adapter.tokenizer) == expected
    assert prepared.sample_settings[0]["content_order"] == ["image", "text"] and prepared.sample_settings[0]["system_prompt"] is None


# ----- image sizes: DAMO's transposed PIL size (faithful_resize_bug) ----------------------------------------


def damo_processor_sizes(visuals: list, merges: list[int], max_tokens: int = 16384, min_tokens: int = 16, patch: int = 14) -> list[tuple[int, int]]:
    """Target (height, width) of DAMO's ``Videollama3ImageProcessor`` restated from its arithmetic.

    Each visual's size is read as the processor reads it: ``height, width = image.size`` for a PIL image
    (its width taken as the height), the array's own (height, width) otherwise; a video (a list of
    frames) by its first frame. One merge size for all (``simple_batched_resize``): the pixel budget
    ``max_tokens * factor^2`` is split evenly over every image and frame, sides rounded to the factor,
    shrunk by sqrt(area / budget) when over it and grown to ``min_tokens`` when under; mixed merge sizes
    (``batched_resize``): one shrink factor sqrt(tokens / max_tokens) for all when the tokens (sides
    rounded up) exceed the budget, else sides rounded.
    """
    read, frames = [], []
    for visual in visuals:
        first = visual[0] if isinstance(visual, list) else visual
        frames.append(len(visual) if isinstance(visual, list) else 1)
        read.append(first.size if isinstance(first, Image.Image) else first.shape[:2])
    factors = [patch * m for m in merges]
    if len(set(factors)) == 1:
        f = factors[0]
        budget, least, sizes = max_tokens * f * f // sum(frames), min_tokens * f * f, []
        for h, w in read:
            size = (round(h / f) * f, round(w / f) * f)
            if size[0] * size[1] > budget:
                beta = math.sqrt(h * w / budget)
                size = (math.floor(h / beta / f) * f, math.floor(w / beta / f) * f)
            if size[0] * size[1] < least:
                beta = math.sqrt(least / (h * w))
                size = (math.ceil(h * beta / f) * f, math.ceil(w * beta / f) * f)
            sizes.append(size)
        return sizes
    tokens = sum(n * math.ceil(h / f) * math.ceil(w / f) for n, (h, w), f in zip(frames, read, factors))
    if tokens > max_tokens:
        beta = math.sqrt(tokens / max_tokens)
        return [(math.floor(h / beta / f) * f, math.floor(w / beta / f) * f) for (h, w), f in zip(read, factors)]
    return [(round(h / f) * f, round(w / f) * f) for (h, w), f in zip(read, factors)]


def grids(encoded, kind: str) -> list[tuple[int, int]]:
    return [(int(g[1]) * 14, int(g[2]) * 14) for g in encoded.inputs.get(f"{kind}_grid_thw", [])]


@pytest.mark.parametrize("case", ["one image", "two images, one shrunk", "image and video"])
def test_image_sizes_are_right_by_default_and_transposed_as_damo_under_faithful_resize_bug(adapter, clip_path, case):
    wide, tall, large = random_image(6, 100).resize((300, 100)), random_image(7, 50).resize((50, 150)), random_image(8, 100).resize((3000, 1000))
    clip = sample_clip(clip_path)
    visuals = {"one image": [wide], "two images, one shrunk": [large, tall], "image and video": [wide, clip]}[case]
    merges = [2 if isinstance(v, Clip) else 1 for v in visuals]
    as_arrays = [[np.asarray(f) for f in v.frames] if isinstance(v, Clip) else np.asarray(v) for v in visuals]
    as_pil = [[np.asarray(f) for f in v.frames] if isinstance(v, Clip) else v for v in visuals]  # DAMO gets video frames as arrays
    for faithful, upstream in ((False, as_arrays), (True, as_pil)):
        encoded = encode_batch(adapter.tokenizer, [("q", visuals)], faithful_resize_bug=faithful)
        expected = damo_processor_sizes(upstream, merges)
        assert grids(encoded, "image") == [s for s, m in zip(expected, merges) if m == 1]
        assert grids(encoded, "video") == [s for s, m in zip(expected, merges) if m == 2]
    correct = damo_processor_sizes(as_arrays, merges)
    assert correct[0][0] < correct[0][1], "a wide image stays wide by default"
    assert damo_processor_sizes(as_pil, merges)[0][0] > damo_processor_sizes(as_pil, merges)[0][1], "and turns tall under the bug"


def test_faithful_resize_bug_resizes_the_pixels_transposed_and_is_recorded(damo_dir, adapter):
    wide = random_image(6, 100).resize((300, 100))
    faithful = VideoLlama3Textdom(pretrained=str(damo_dir), device="cpu", faithful_resize_bug=True)
    ours, theirs = (a.prepare([Request("q", [wide], {}, {})]) for a in (adapter, faithful))
    assert ours.inputs["image_grid_thw"].tolist() == [[1, 7, 21]] and theirs.inputs["image_grid_thw"].tolist() == [[1, 21, 7]]
    assert ours.classes.counts() == theirs.classes.counts(), "the same tokens, differently shaped"
    # 300 x 100 read as height 300, width 100: bicubic to 98 x 294 (width x height), 14 x 14 patches in raster order
    pixels = (np.asarray(wide.resize((98, 294), Image.BICUBIC), dtype=np.float64) / 255 - 0.5) / 0.5
    patches = pixels.reshape(21, 14, 7, 14, 3).transpose(0, 2, 4, 1, 3).reshape(21 * 7, 3 * 14 * 14)
    np.testing.assert_allclose(theirs.inputs["pixel_values"].numpy(), patches, atol=1e-6)
    assert (adapter.settings()["faithful_resize_bug"], faithful.settings()["faithful_resize_bug"]) == (False, True)


# ----- token compression as the checkpoint says -------------------------------------------------------------


@pytest.fixture(scope="module")
def still_clip_path(tmp_path_factory):
    """30 frames at 10 fps of 112 x 140 where only a small square moves: compression drops most tokens."""
    return write_video(tmp_path_factory.mktemp("still") / "still.mp4", 30, (112, 140), 10, still=True)


@pytest.mark.parametrize("layout,says,given,compressed", [
    ("damo", True, None, True), ("damo", False, None, False), ("native", False, None, False), ("native", True, None, True),
    ("damo", False, True, True), ("damo", True, False, False),
])  # fmt: skip
def test_token_compression_follows_the_checkpoint_unless_given(tmp_path, still_clip_path, layout, says, given, compressed):
    from lmms_textdom.tiny.videollama3 import save_videollama3

    folder = save_videollama3(tmp_path / "ckpt", layout=layout, token_compression=says)
    extra = {} if given is None else {"token_compression": given}
    adapter = VideoLlama3Textdom(pretrained=str(folder), device="cpu", **extra)
    prepared = adapter.prepare([Request("describe the video", [str(still_clip_path)], {}, {})])
    (record,) = prepared.sample_settings
    video_count = prepared.classes.counts()[0][prepared.classes.names.index("video")]  # |O|
    assert adapter.settings()["token_compression"] is compressed
    assert record["video_tokens_uncompressed"] == [3 * 4 * 5]
    if compressed:
        assert video_count == record["video_tokens"][0] < record["video_tokens_uncompressed"][0]
    else:
        assert video_count == record["video_tokens"][0] == record["video_tokens_uncompressed"][0]
        assert prepared.inputs["video_compression_mask"].all()


# ----- stop tokens ------------------------------------------------------------------------------------------


class EndTurnAt(LogitsProcessor):
    """Makes ``end`` the answer's token number ``step`` (0-based) and forbids every ``stops`` token before and after."""

    def __init__(self, step: int, end: int, stops: list[int]):
        self.step, self.end, self.stops = step, end, stops
        self.prompt_len, self.seen = None, None

    def __call__(self, input_ids, scores):
        self.prompt_len = input_ids.shape[1] if self.prompt_len is None else self.prompt_len
        self.seen = input_ids
        scores[:, self.stops] = -float("inf")
        if input_ids.shape[1] - self.prompt_len == self.step:
            scores[:, :] = -float("inf")
            scores[:, self.end] = 0.0
        return scores


def test_answers_and_rows_end_at_the_end_of_the_turn(adapter, monkeypatch):
    tok = adapter.tokenizer
    end_turn, end_text = tok.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>"])
    # the checkpoint's generation config names only <|endoftext|> (as the -HF conversion's does); <|im_end|> is added
    assert adapter.model.generation_config.eos_token_id == [end_text, end_turn]
    forced = EndTurnAt(3, end_turn, [end_turn, end_text, tok.eos_token_id])
    monkeypatch.setattr(adapter.model, "generate", functools.partial(adapter.model.generate, logits_processor=LogitsProcessorList([forced])))
    request = Request("what is shown ?", [random_image(9, 56)], {}, {"max_new_tokens": 12})
    ((text, payload),) = adapter._run_batch([request])
    answer = forced.seen[0, forced.prompt_len :]
    assert answer.tolist()[-1] != end_turn and len(answer) == 3, "generation stopped at <|im_end|>"
    assert text == tok.decode(answer, skip_special_tokens=True)
    assert json.loads(payload)["stats"]["rows"] == 4, "three answer tokens and the row that ended the turn"


def eager_last_block_scores(tower, pixels, grid, merges) -> list[torch.Tensor]:
    """Per merged token: the last block's eager attention weights (the model file's own function), averaged
    over heads, summed over queries, averaged over the token's patches; one tensor per grid row."""
    import sys

    eager = copy.deepcopy(tower)
    eager.set_attn_implementation("eager")
    module = sys.modules[type(eager.encoder.layers[0].self_attn).__module__]
    target, original, weights = eager.encoder.layers[-1].self_attn, module.eager_attention_forward, []

    def spy(attention, *args, **kwargs):
        output = original(attention, *args, **kwargs)
        if attention is target:
            weights.append(output[1])  # (1, heads, n, n) for one frame or image
        return output

    module.eager_attention_forward = spy
    try:
        with torch.no_grad():
            eager(pixels, grid_thw=grid, merge_sizes=merges)
    finally:
        module.eager_attention_forward = original
    received = torch.cat([w[0].double().mean(0).sum(0) for w in weights])
    pieces = received.split(grid.prod(-1).tolist())
    return [piece.view(-1, int(m) ** 2).mean(-1) for piece, m in zip(pieces, merges)]


def test_pruning_scores_equal_the_last_blocks_eager_attention(adapter, clip_path):
    from lmms_textdom.models.videollama3.scoring import LastBlockReceivedAttention

    tower = adapter.model.model.vision_model
    encoded = encode_batch(adapter.tokenizer, [("a", [random_image(2, 56).resize((84, 56)), random_image(3, 70)]), ("b", [sample_clip(clip_path)])])
    scorer = LastBlockReceivedAttention(tower)
    for kind, pixels in (("image", "pixel_values"), ("video", "pixel_values_videos")):
        grid, merges = encoded.inputs[f"{kind}_grid_thw"], encoded.inputs[f"{kind}_merge_sizes"]
        with scorer.recording():
            tower(encoded.inputs[pixels], grid_thw=grid, merge_sizes=merges)  # the tower keeps its sdpa attention
        expected = eager_last_block_scores(tower, encoded.inputs[pixels], grid, merges)
        assert [len(s) for s in scorer.scores] == [int(g.prod()) // int(m) ** 2 for g, m in zip(grid, merges)]
        for ours, reference in zip(scorer.scores, expected):
            torch.testing.assert_close(ours.double(), reference, atol=1e-5, rtol=1e-6)


# ----- probe vs eager -------------------------------------------------------------------------------------


def probe_against_eager(model, inputs, classes):
    with AttentionProbe(model, classes) as probe:
        out = model.generate(**inputs, max_new_tokens=NEW_TOKENS, do_sample=False)
    prompt_len = inputs["input_ids"].shape[1] if "input_ids" in inputs else 0
    lengths = output_lengths(out[:, prompt_len:], model.generation_config.eos_token_id, model.generation_config.pad_token_id)
    sequences, expected = eager_class_masses(model, inputs, classes.ids, len(classes.names), lengths, NEW_TOKENS)
    assert torch.equal(sequences, out), "eager and probed generation chose different tokens"
    for s, ref in zip(probe.stats(lengths), expected):
        np.testing.assert_allclose(np.column_stack([s.mass, s.generated]), ref, atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def mixed_requests(clip_path):
    return [
        Request("what is shown in the image ?", [random_image(1, 40).resize((60, 40))], {}, {}),
        Request("describe the video", [str(clip_path)], {}, {}),
    ]


def test_probe_masses_equal_eager_attention_on_a_padded_image_and_video_batch(adapter, mixed_requests):
    prepared = adapter.prepare(mixed_requests)
    assert (prepared.inputs["attention_mask"][0] == 0).any(), "the batch must be padded"
    probe_against_eager(adapter.model, prepared.inputs, prepared.classes)


def test_probe_masses_equal_eager_attention_after_pruning_and_replication(damo_dir, mixed_requests):
    edited = VideoLlama3Textdom(pretrained=str(damo_dir), device="cpu", prune_ratio=0.5, nontext_repeat=2)
    prepared = edited.prepare(mixed_requests)
    assert "inputs_embeds" in prepared.inputs
    image, video = prepared.sample_settings
    assert image["nontext_kept"] == kept_count(image["nontext_original"], 0.5)
    # each frame is pruned on its own: the kept count is the sum of per-frame kept counts
    frames = encode_batch(edited.tokenizer, [("x", [sample_clip(mixed_requests[1].visuals[0])])]).frame_tokens
    assert video["nontext_original"] == sum(frames) and video["nontext_kept"] == sum(kept_count(n, 0.5) for n in frames)
    assert prepared.classes.counts()[1][2] == 2 * video["nontext_kept"]
    probe_against_eager(edited.model, prepared.inputs, prepared.classes)


# ----- bad input ---------------------------------------------------------------------------------------------


def test_unreadable_video_fails_early_naming_the_file(adapter, tmp_path):
    path = tmp_path / "broken.mp4"
    path.write_bytes(b"this is not a video" * 10)
    with pytest.raises(UsageError, match="cannot read video .*broken.mp4"):
        adapter.prepare([Request("describe", [str(path)], {}, {})])


def test_video_shorter_than_one_frame_at_fps_fails_early(adapter, tmp_path):
    path = write_video(tmp_path / "short.mp4", 2, (56, 56), 8)  # 0.25 s
    with pytest.raises(UsageError, match="shorter than one frame at fps=1.0.*raise fps"):
        adapter.prepare([Request("describe", [str(path)], {}, {})])
    assert len(sample_clip(path, fps=8).frames) == 2


def test_a_checkpoint_of_another_family_is_refused_before_loading(tiny_qwen_dir):
    with pytest.raises(UsageError, match="loads VideoLLaMA3 checkpoints.*model_type 'qwen2_5_vl'"):
        VideoLlama3Textdom(pretrained=str(tiny_qwen_dir), device="cpu")


def test_remote_code_is_refused(damo_dir):
    with pytest.raises(UsageError, match="trust_remote_code must stay false"):
        VideoLlama3Textdom(pretrained=str(damo_dir), device="cpu", trust_remote_code=True)


@pytest.mark.parametrize("arg,value,message", [
    ("video_order", "after", "accepted: text_first, video_first"),
    ("faithful_resize_bug", "maybe", "expected true or false"),
    ("token_compression", "sometimes", "expected true or false"),
])  # fmt: skip
def test_bad_layout_args_fail_before_loading(damo_dir, arg, value, message):
    with pytest.raises(UsageError, match=message):
        VideoLlama3Textdom(pretrained=str(damo_dir), device="cpu", **{arg: value})
