"""Kimi-VL prompts and language-model inputs: chat template, expanded media placeholders, tokens, patches.

Each image is ``<|media_start|>image<|media_content|><|media_pad|><|media_end|>`` in Kimi's chat
layout; its one ``<|media_pad|>`` is then written once per merged token of that image (what the
hub processor does), so the native model finds one placeholder per feature.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import torch
from PIL import Image

from lmms_textdom.models.kimi_vl.images import KimiImageRules, image_inputs

MEDIA_PAD = "<|media_pad|>"
IMAGE_BLOCK = f"<|media_start|>image<|media_content|>{MEDIA_PAD}<|media_end|>"
DEFAULT_SYSTEM = "You are a helpful assistant"


def render_chat(messages: Sequence[dict], add_generation_prompt: bool = True) -> str:
    """Kimi-VL's chat template written out: a default system turn unless one is given, then
    ``<|im_{role}|>{role}<|im_middle|>`` + content + ``<|im_end|>`` per turn, with no separators."""
    parts = []
    if not messages or messages[0]["role"] != "system":
        parts.append(f"<|im_system|>system<|im_middle|>{DEFAULT_SYSTEM}<|im_end|>")
    for message in messages:
        role, content = message["role"], message["content"]
        if isinstance(content, str):
            body = content
        else:
            body = "".join(IMAGE_BLOCK if item["type"] == "image" else item["text"] for item in content)
        parts.append(f"<|im_{role}|>{role}<|im_middle|>{body}<|im_end|>")
    if add_generation_prompt:
        parts.append("<|im_assistant|>assistant<|im_middle|>")
    return "".join(parts)


def expand_placeholders(text: str, counts: Sequence[int]) -> str:
    """Each ``<|media_pad|>`` repeated as often as its image has merged tokens, in order."""
    tokens = iter(counts)
    return re.sub(re.escape(MEDIA_PAD), lambda _: MEDIA_PAD * next(tokens), text)


@dataclass
class KimiProcessor:
    """Tokenizer + image rules: what the hub's ``KimiVLProcessor`` does, without torchvision or remote code."""

    tokenizer: object
    rules: KimiImageRules

    @property
    def media_pad_id(self) -> int:
        return self.tokenizer.convert_tokens_to_ids(MEDIA_PAD)

    def prompt(self, text: str, num_images: int) -> str:
        """One user turn, images first (the task's order), with the checkpoint's template if it has one."""
        messages = [{"role": "user", "content": [{"type": "image"}] * num_images + [{"type": "text", "text": text}]}]
        if self.tokenizer.chat_template:
            return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return render_chat(messages)

    def __call__(self, prompts: Sequence[str], images: Sequence[Image.Image] = ()) -> dict[str, torch.Tensor]:
        """Left-padded tokens of the prompts with their placeholders expanded, plus the images' patches.

        Images are consumed in prompt order across the batch.
        """
        inputs = image_inputs(self.rules, list(images)) if images else {}
        counts = [self.rules.tokens(image) for image in images]
        placeholders = [prompt.count(MEDIA_PAD) for prompt in prompts]
        if sum(placeholders) != len(counts):
            raise ValueError(f"the prompts hold {sum(placeholders)} image placeholders for {len(counts)} images")
        texts, used = [], 0
        for prompt, n in zip(prompts, placeholders):
            texts.append(expand_placeholders(prompt, counts[used : used + n]))
            used += n
        tokens = self.tokenizer(texts, padding=True, return_tensors="pt")
        return {"input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"], **inputs}
