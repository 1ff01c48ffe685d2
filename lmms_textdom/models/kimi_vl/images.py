"""Kimi-VL's image preprocessing in PIL and numpy (the hub's processor needs torchvision).

The rules of ``KimiVLImageProcessor`` with the checkpoint's ``preprocessor_config.json``:
an image of more than ``in_token_limit`` 14-px patches is scaled down by sqrt(limit / patches)
(PIL bicubic, sizes truncated); with ``pad_input`` it is zero-padded on the bottom and right to a
multiple of 28 px (one merged token); then scaled to [0, 1], normalised with the config's mean and
std, and cut into 14 x 14 patches in raster order, ``(patches, 3, 14, 14)``, which is the layout
the native MoonViT's patch convolution, position table and 2 x 2 merge read.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np
import torch
from loguru import logger
from PIL import Image

from lmms_textdom.core.errors import UsageError
from lmms_textdom.models.checkpoint import checkpoint_file
from lmms_textdom.models.kimi_vl.checkpoint import MAX_PATCHES_PER_SIDE


#: KimiVLImageProcessor's defaults, used only where the checkpoint's config names no mean / std
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class KimiImageRules:
    image_mean: tuple[float, float, float] = CLIP_MEAN
    image_std: tuple[float, float, float] = CLIP_STD
    in_token_limit: int = 4096
    patch_size: int = 14
    merge_kernel_size: tuple[int, int] = (2, 2)
    pad_input: bool = True

    @classmethod
    def from_checkpoint(cls, pretrained: str, revision: str = "main") -> "KimiImageRules":
        """The checkpoint's ``preprocessor_config.json``; a field it lacks takes the original processor's default."""
        config = json.loads(checkpoint_file(pretrained, "preprocessor_config.json", revision).read_text())
        fields = {k: config[k] for k in ("in_token_limit", "patch_size", "pad_input") if k in config}
        if "merge_kernel_size" in config:
            fields["merge_kernel_size"] = tuple(config["merge_kernel_size"])
        for key, default in (("image_mean", CLIP_MEAN), ("image_std", CLIP_STD)):
            if key not in config:
                logger.warning(f"{pretrained}: preprocessor_config.json has no {key}; using KimiVLImageProcessor's default {default}")
            fields[key] = tuple(config.get(key, default))
        return cls(**fields)

    @property
    def merge(self) -> int:
        return self.merge_kernel_size[0] * self.merge_kernel_size[1]

    def scaled_size(self, width: int, height: int) -> tuple[int, int]:
        """The size after the downscale to ``in_token_limit`` patches (unchanged below it)."""
        p = self.patch_size
        if (width // p) * (height // p) > self.in_token_limit:
            scale = math.sqrt(self.in_token_limit / ((width // p) * (height // p)))
            return int(width * scale), int(height * scale)
        return width, height

    def resized_size(self, image: Image.Image) -> tuple[int, int]:
        """(width, height) of ``resized``: padded up (or cropped down) to whole merged tokens."""
        w, h = self.scaled_size(*image.size)
        unit_h, unit_w = self.merge_kernel_size[0] * self.patch_size, self.merge_kernel_size[1] * self.patch_size
        if self.pad_input:
            return w + (-w) % unit_w, h + (-h) % unit_h
        return w - w % unit_w, h - h % unit_h

    def resized(self, image: Image.Image) -> Image.Image:
        """Downscaled, then zero-padded on the bottom and right (or, without ``pad_input``, centre-cropped)."""
        w, h = self.resized_size(image)  # from the original size: the downscale happens once
        image = image.convert("RGB")
        scaled = self.scaled_size(*image.size)
        if scaled != image.size:
            image = image.resize(scaled, Image.Resampling.BICUBIC)
        if self.pad_input:
            padded = Image.new("RGB", (w, h), (0, 0, 0))
            padded.paste(image, (0, 0))
            return padded
        left, top = (image.size[0] - w) // 2, (image.size[1] - h) // 2
        return image.crop((left, top, left + w, top + h))

    def grid(self, image: Image.Image) -> tuple[int, int]:
        """(rows, columns) of patches after ``resized``; refuses grids beyond MoonViT's rotary table."""
        w, h = self.resized_size(image)
        rows, cols = h // self.patch_size, w // self.patch_size
        if not (1 <= rows <= MAX_PATCHES_PER_SIDE and 1 <= cols <= MAX_PATCHES_PER_SIDE):
            raise UsageError(
                f"a {image.size[0]}x{image.size[1]} px image becomes {rows}x{cols} patches after Kimi-VL's resize; "
                f"MoonViT's position table allows 1 to {MAX_PATCHES_PER_SIDE} per side: crop or pad the image to a "
                "less extreme aspect ratio"
            )
        return rows, cols

    def patches(self, image: Image.Image) -> tuple[torch.Tensor, tuple[int, int]]:
        """((rows * cols, 3, p, p) float32 patches in raster order, (rows, cols))."""
        rows, cols = self.grid(image)
        p = self.patch_size
        pixels = np.asarray(self.resized(image), dtype=np.float32) / np.float32(255)
        pixels = (pixels - np.asarray(self.image_mean, np.float32)) / np.asarray(self.image_std, np.float32)
        # (H, W, C) -> (rows, p, cols, p, C) -> (rows, cols, C, p, p)
        cut = pixels.reshape(rows, p, cols, p, 3).transpose(0, 2, 4, 1, 3)
        return torch.from_numpy(np.ascontiguousarray(cut.reshape(rows * cols, 3, p, p))), (rows, cols)

    def tokens(self, image: Image.Image) -> int:
        """Language-model tokens the image becomes (one per 2 x 2 patches)."""
        rows, cols = self.grid(image)
        return rows * cols // self.merge


def image_inputs(rules: KimiImageRules, images: list[Image.Image]) -> dict[str, torch.Tensor]:
    """``pixel_values`` and ``image_grid_thw`` (one frame each) for the native model."""
    cut = [rules.patches(image) for image in images]
    return {
        "pixel_values": torch.cat([patches for patches, _ in cut]),
        "image_grid_thw": torch.tensor([[1, rows, cols] for _, (rows, cols) in cut], dtype=torch.long),
    }
