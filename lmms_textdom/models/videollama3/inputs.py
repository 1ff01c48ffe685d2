"""VideoLLaMA3 language-model inputs built as the original processor builds them, without torchvision.

- Size: every image and every video frame of one request shares the original's visual-token
  budget (``max_tokens`` 16,384 language-model tokens, at least 16 per visual), resized with PIL
  bicubic to multiples of 14 x merge; images use merge 1, video frames merge 2.
- Pixels: rescaled to [0, 1] and normalised with the checkpoint's mean/std (0.5), laid out as the
  native model reads them: per frame, merge x merge groups of 14 x 14 patches, each (C, p, p).
- Compression (video only, on by default): a merged token of frame t > 0 is kept when the mean
  absolute change of its pixels since frame t - 1, times 255, exceeds 0.1; frame 0 is kept whole and
  every frame keeps at least its first token. Computed on bfloat16 pixels, because the original
  casts ``pixel_values`` to bfloat16 before the model computes the mask.
- Sizes of images under ``faithful_resize_bug``: DAMO's processor reads a PIL image's size as
  ``height, width = image.size``, so it sizes the image as if it were transposed (a 300 x 100
  image is resized to 98 x 294 pixels, width x height) and the model sees its aspect ratio
  transposed; the native ``-HF`` processor and the default here size it correctly. Video frames
  reach that code as arrays and are sized correctly in both.
- Prompt: the original chat template's layout, ``Time {t}s:`` before each frame, frames joined by
  ``,``, a newline after the last frame and after each image, content pieces joined without a
  separator; only the kept tokens of a frame are written, so the language model and the
  position-class map see the compressed sequence. A sample with a video follows ``video_order``
  (``models/layout.py``): ``text_first`` is VLMEvalKit's VideoLLaMA3 message (system turn "You are
  a helpful assistant.", then the question, then the video), ``video_first`` lmms-eval's
  ``videollama3`` layout (no system turn, visuals, then the question). Other samples keep the
  visuals-then-text layout without a system turn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from lmms_textdom.models.layout import TEXT, content_order
from lmms_textdom.models.videollama3.checkpoint import IMAGE_PAD, VIDEO_PAD
from lmms_textdom.models.videollama3.frames import Clip

PATCH_SIZE = 14
IMAGE_MERGE, VIDEO_MERGE = 1, 2
MAX_VISUAL_TOKENS, MIN_VISUAL_TOKENS = 16384, 16
COMPRESSION_THRESHOLD = 0.1  # mean |pixel change| x 255
MEAN = STD = (0.5, 0.5, 0.5)  # the native VideoLLaMA3 processors' normalisation
#: the system turn of VLMEvalKit's VideoLLaMA3 wrapper (``vlm/video_llm/videollama3.py``)
VLMEVALKIT_SYSTEM = "You are a helpful assistant."


def target_sizes(items: Sequence[tuple[int, int, int]], merges: Sequence[int], max_tokens: int = MAX_VISUAL_TOKENS,
                 min_tokens: int = MIN_VISUAL_TOKENS, patch: int = PATCH_SIZE) -> list[tuple[int, int]]:  # fmt: skip
    """(height, width) of each visual ((frames, height, width)) under one shared token budget.

    The original's two rules: with one merge size for all, the pixel budget is split evenly per
    frame or image; with images and videos mixed, all sizes shrink by one factor when the total
    token count exceeds the budget.
    """
    factors = [patch * m for m in merges]
    if len(set(factors)) == 1:
        factor = factors[0]
        per_visual = max_tokens * factor * factor // sum(n for n, _, _ in items)
        smallest = min_tokens * factor * factor
        sizes = []
        for _, height, width in items:
            h, w = round(height / factor) * factor, round(width / factor) * factor
            if h * w > per_visual:
                beta = math.sqrt(height * width / per_visual)
                h, w = math.floor(height / beta / factor) * factor, math.floor(width / beta / factor) * factor
            if h * w < smallest:
                beta = math.sqrt(smallest / (height * width))
                h, w = math.ceil(height * beta / factor) * factor, math.ceil(width * beta / factor) * factor
            sizes.append((h, w))
        return sizes
    total = sum(n * math.ceil(h / f) * math.ceil(w / f) for (n, h, w), f in zip(items, factors))
    beta = math.sqrt(total / max_tokens) if total > max_tokens else None
    # at least one merge group per side (the original would fail on a zero side)
    if beta is None:
        return [(max(f, round(h / f) * f), max(f, round(w / f) * f)) for (_, h, w), f in zip(items, factors)]
    return [(max(f, math.floor(h / beta / f) * f), max(f, math.floor(w / beta / f) * f)) for (_, h, w), f in zip(items, factors)]


def normalised(images: Sequence[Image.Image], size: tuple[int, int], mean=MEAN, std=STD) -> np.ndarray:
    """(frames, C, H, W) float32: bicubic resize to ``size`` (height, width), rescale to [0, 1], normalise."""
    height, width = size
    arrays = [np.asarray(image.convert("RGB").resize((width, height), Image.BICUBIC), dtype=np.float64) / 255 for image in images]
    pixels = (np.stack(arrays).astype(np.float32) - np.float32(mean)) / np.float32(std)
    return pixels.transpose(0, 3, 1, 2)


def patchify(pixels: np.ndarray, merge: int, patch: int = PATCH_SIZE) -> tuple[torch.Tensor, list[int]]:
    """(frames, C, H, W) -> (frames * gh * gw, C * p * p) in the native order, and the grid [frames, gh, gw]."""
    frames, channels, height, width = pixels.shape
    gh, gw = height // patch, width // patch
    grouped = pixels.reshape(frames, channels, gh // merge, merge, patch, gw // merge, merge, patch)
    grouped = grouped.transpose(0, 2, 5, 3, 6, 1, 4, 7)  # (t, gh/m, gw/m, m, m, C, p, p)
    return torch.from_numpy(np.ascontiguousarray(grouped).reshape(frames * gh * gw, channels * patch * patch)), [frames, gh, gw]


def compression_mask(pixels: torch.Tensor, grid: Sequence[int], merge: int, threshold: float = COMPRESSION_THRESHOLD,
                     min_tokens: int = 1, dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:  # fmt: skip
    """Which merged tokens of one video (frame-major) the original keeps; see the module docstring."""
    frames, gh, gw = grid
    tokens = gh * gw // (merge * merge)
    if frames == 1:
        return torch.ones(tokens, dtype=torch.bool)
    grouped = pixels.to(dtype).view(frames, tokens, -1)
    change = (grouped[1:] - grouped[:-1]).abs().mean(-1) * 255
    keep = torch.cat([torch.ones(1, tokens, dtype=torch.bool), change > threshold])
    keep[keep.sum(1) < min_tokens, :min_tokens] = True
    return keep.flatten()


def timestamp(seconds: float) -> str:
    """The original template's ``t | round(1) | string``."""
    return str(round(float(seconds), 1))


def video_text(timestamps: Sequence[float], kept_per_frame: Sequence[int]) -> str:
    frames = [f"Time {timestamp(t)}s:" + VIDEO_PAD * k for t, k in zip(timestamps, kept_per_frame)]
    return ",".join(frames) + "\n"


def chat_prompt(pieces: Sequence[str], system: str | None = None) -> str:
    """An optional system turn, one user turn of ``pieces`` in order, and the assistant's turn opened."""
    head = f"<|im_start|>system\n{system}<|im_end|>\n" if system is not None else ""
    return f"{head}<|im_start|>user\n{''.join(pieces)}<|im_end|>\n<|im_start|>assistant\n"


def visual_shape(visual, faithful_resize_bug: bool = False) -> tuple[int, int, int]:
    """(frames, height, width) the size rule reads; transposed for an image under ``faithful_resize_bug``."""
    if isinstance(visual, Clip):
        return len(visual.frames), visual.frames[0].height, visual.frames[0].width
    width, height = visual.size
    return (1, width, height) if faithful_resize_bug else (1, height, width)


@dataclass
class Encoded:
    """Generate inputs of a batch and what the adapter needs to edit or record them."""

    inputs: dict[str, torch.Tensor]
    image_tokens: list[int] = field(default_factory=list)  # per image, batch order
    frame_tokens: list[int] = field(default_factory=list)  # kept tokens per video frame, batch order
    per_sample: list[dict] = field(default_factory=list)
    prompts: list[str] = field(default_factory=list)  # the chat prompts tokenized, for the text parts


def encode_batch(tokenizer, requests: Sequence[tuple[str, list]], max_tokens: int = MAX_VISUAL_TOKENS,
                 compress: bool = True, mean=MEAN, std=STD, video_order: str = "text_first",
                 faithful_resize_bug: bool = False) -> Encoded:  # fmt: skip
    """``requests``: (text, visuals) with visuals PIL images or ``Clip``s, in the task's order."""
    images, videos, masks, prompts, encoded = [], [], [], [], Encoded({})
    for text, visuals in requests:
        shapes = [visual_shape(v, faithful_resize_bug) for v in visuals]
        merges = [VIDEO_MERGE if isinstance(v, Clip) else IMAGE_MERGE for v in visuals]
        kinds = ["video" if isinstance(v, Clip) else "image" for v in visuals]
        order = content_order(kinds, video_order)
        system = VLMEVALKIT_SYSTEM if "video" in kinds and video_order == "text_first" else None
        texts, record = [], {"content_order": order, "system_prompt": system}
        for visual, size, merge in zip(visuals, target_sizes(shapes, merges, max_tokens), merges):
            frames = visual.frames if isinstance(visual, Clip) else [visual]
            patches, grid = patchify(normalised(frames, size, mean, std), merge)
            if not isinstance(visual, Clip):
                images.append((patches, grid))
                encoded.image_tokens.append(grid[1] * grid[2])
                texts.append(IMAGE_PAD * (grid[1] * grid[2]) + "\n")
                continue
            per_frame = grid[1] * grid[2] // merge**2
            mask = compression_mask(patches, grid, merge) if compress else torch.ones(grid[0] * per_frame, dtype=torch.bool)
            kept = mask.view(grid[0], per_frame).sum(1).tolist()
            videos.append((patches, grid))
            masks.append(mask)
            encoded.frame_tokens += kept
            texts.append(video_text(visual.timestamps, kept))
            for key, value in (("video_frames", visual.indices), ("video_timestamps", visual.timestamps),
                               ("video_tokens_uncompressed", grid[0] * per_frame), ("video_tokens", sum(kept))):  # fmt: skip
                record.setdefault(key, []).append(value)
        visual_texts = iter(texts)
        prompts.append(chat_prompt([text if kind == TEXT else next(visual_texts) for kind in order], system))
        encoded.per_sample.append(record)
    encoded.prompts = prompts
    tokens = tokenizer(prompts, padding=True, return_tensors="pt", add_special_tokens=False)
    encoded.inputs = {"input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"]}
    for kind, items, merge in (("image", images, IMAGE_MERGE), ("video", videos, VIDEO_MERGE)):
        if not items:
            continue
        prefix = "pixel_values" if kind == "image" else "pixel_values_videos"
        encoded.inputs[prefix] = torch.cat([p for p, _ in items])
        encoded.inputs[f"{kind}_grid_thw"] = torch.tensor([g for _, g in items])
        encoded.inputs[f"{kind}_merge_sizes"] = torch.full((len(items),), merge)
    if masks:
        encoded.inputs["video_compression_mask"] = torch.cat(masks)
    return encoded
