"""Qwen2.5-VL language-model inputs from prompts, images and sampled video frames.

One path for every set-up: images go through the checkpoint's image processor, video frames go
through the same image processor (its resize and normalisation, at the video pixel budget) and are
then paired into the ViT's temporal patches here, and the placeholders are expanded and tokenized
here. Nothing needs transformers' video processor, which cannot load without torchvision.

Layout of ``pixel_values_videos`` (what the model's patch embedding expects): for each pair of
frames, the patches of the frame grid in the image processor's order (2 x 2 merge groups
together), each patch flattened as (channel, time, row, column) with time = the two frames.
"""

from __future__ import annotations

import re
from typing import Sequence

import torch
from PIL import Image

from lmms_textdom.models.qwen2_5_vl.processor import IMAGE_TOKEN, VIDEO_TOKEN

#: per-frame pixel budget for videos (qwen-vl-utils' and transformers' video defaults)
VIDEO_MIN_PIXELS = 128 * 28 * 28
VIDEO_MAX_PIXELS = 768 * 28 * 28
#: pixels of all frames of one video together: qwen-vl-utils' default, 0.9 x a 128k-token context
VIDEO_TOTAL_PIXELS = int(128000 * 28 * 28 * 0.9)
FRAME_FACTOR = 2  # frames per temporal patch
#: frames passed to the image processor at once (bounds the transient float32 copies)
FRAME_CHUNK = 8


def video_patches(image_processor, frames: Sequence[Image.Image], min_pixels: int, max_pixels: int) -> tuple[torch.Tensor, list[int]]:
    """(patches, [t, h, w]) of one video; an odd frame count repeats the last frame, as Qwen does."""
    temporal = image_processor.temporal_patch_size
    size = {"shortest_edge": min_pixels, "longest_edge": max_pixels}
    per_frame, grid = [], None
    for start in range(0, len(frames), FRAME_CHUNK):
        chunk = [frame.convert("RGB") for frame in frames[start : start + FRAME_CHUNK]]
        out = image_processor(images=chunk, size=size, return_tensors="pt")
        grid = out["image_grid_thw"][0].tolist()
        # each frame comes back as a still image: its patch repeated over the temporal axis
        patches = out["pixel_values"].view(len(chunk), grid[1] * grid[2], 3, temporal, -1)[:, :, :, 0]
        per_frame.append(patches)
    frames_patches = torch.cat(per_frame)  # (frames, patches, channels, row * column)
    if pad := -len(frames_patches) % temporal:
        frames_patches = torch.cat([frames_patches, frames_patches[-1:].expand(pad, -1, -1, -1)])
    steps = len(frames_patches) // temporal
    paired = frames_patches.view(steps, temporal, *frames_patches.shape[1:]).permute(0, 2, 3, 1, 4)
    return paired.reshape(steps * grid[1] * grid[2], -1), [steps, grid[1], grid[2]]


def frame_pixel_range(frames: int, min_pixels: int, max_pixels: int, total_pixels: int = VIDEO_TOTAL_PIXELS) -> tuple[int, float]:
    """(min, max) area of each frame of a ``frames``-frame video, as qwen-vl-utils' ``fetch_video`` sets it.

    The largest area shrinks so the video's frames share ``total_pixels`` (never below 1.05 x the
    smallest area, never above ``VIDEO_MAX_PIXELS`` or the given ``max_pixels``).
    """
    budget = max(min(VIDEO_MAX_PIXELS, total_pixels / frames * FRAME_FACTOR), int(min_pixels * 1.05))
    return min_pixels, min(max_pixels, budget)


def expand_placeholders(text: str, image_counts: list[int], video_counts: list[int]) -> str:
    """Each image / video placeholder repeated as often as its visual has merged tokens, in order."""
    images, videos = iter(image_counts), iter(video_counts)

    def repeat(match: re.Match) -> str:
        token = match.group(0)
        return token * next(images if token == IMAGE_TOKEN else videos)

    return re.sub(f"{re.escape(IMAGE_TOKEN)}|{re.escape(VIDEO_TOKEN)}", repeat, text)


def build_inputs(
    processor,
    prompts: Sequence[str],
    images: Sequence[Image.Image] = (),
    videos: Sequence = (),
    video_pixels: tuple[int, int] = (VIDEO_MIN_PIXELS, VIDEO_MAX_PIXELS),
    per_video_pixels: Sequence[tuple[int, float]] | None = None,
) -> dict[str, torch.Tensor]:
    """Tokenized, left-padded prompts with every visual's placeholders expanded, plus pixel inputs.

    ``videos`` are ``lmms_textdom.media.video.SampledVideo``; images and videos are consumed in prompt
    order across the batch. Frames are resized into ``video_pixels`` (min, max area), or into each
    video's own range from ``per_video_pixels``.
    """
    merge = processor.image_processor.merge_size**2
    inputs: dict[str, torch.Tensor] = {}
    image_counts, video_counts = [], []
    if images:
        out = processor.image_processor(images=[image.convert("RGB") for image in images], return_tensors="pt")
        inputs["pixel_values"], inputs["image_grid_thw"] = out["pixel_values"], out["image_grid_thw"]
        image_counts = (out["image_grid_thw"].prod(-1) // merge).tolist()
    if videos:
        ranges = per_video_pixels if per_video_pixels is not None else [video_pixels] * len(videos)
        patches, grids = zip(*(video_patches(processor.image_processor, v.frames, *r) for v, r in zip(videos, ranges, strict=True)))
        inputs["pixel_values_videos"] = torch.cat(patches)
        inputs["video_grid_thw"] = torch.tensor(grids)
        temporal = processor.image_processor.temporal_patch_size
        # seconds covered by one temporal patch: sets the spacing of the time positions
        inputs["second_per_grid_ts"] = torch.tensor([temporal / v.sampled_fps for v in videos], dtype=torch.float32)
        video_counts = (inputs["video_grid_thw"].prod(-1) // merge).tolist()
    texts, used_images, used_videos = [], 0, 0
    for prompt in prompts:
        n_images, n_videos = prompt.count(IMAGE_TOKEN), prompt.count(VIDEO_TOKEN)
        texts.append(expand_placeholders(
            prompt, image_counts[used_images : used_images + n_images], video_counts[used_videos : used_videos + n_videos]
        ))  # fmt: skip
        used_images, used_videos = used_images + n_images, used_videos + n_videos
    if (used_images, used_videos) != (len(image_counts), len(video_counts)):
        raise ValueError(
            f"the prompts hold {used_images} image and {used_videos} video placeholders for "
            f"{len(image_counts)} images and {len(video_counts)} videos"
        )
    tokens = processor.tokenizer(texts, padding=True, return_tensors="pt")
    ids = tokens["input_ids"]
    image_id, video_id = processor.tokenizer.convert_tokens_to_ids([IMAGE_TOKEN, VIDEO_TOKEN])
    # 0 text, 1 image, 2 video: what the model's 3-D position builder reads
    type_ids = (ids == image_id).long() + 2 * (ids == video_id).long()
    return {"input_ids": ids, "attention_mask": tokens["attention_mask"], "mm_token_type_ids": type_ids, **inputs}
