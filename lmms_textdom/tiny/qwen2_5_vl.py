"""A tiny Qwen2.5-VL (windowed ViT with a full-attention block + Qwen2 language model, 3-D rotary)."""

from __future__ import annotations

from pathlib import Path

from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
from transformers.models.qwen2_vl import Qwen2VLImageProcessorPil

from lmms_textdom.models.qwen2_5_vl.processor import IMAGE_TOKEN, VIDEO_TOKEN, ImageOnlyQwenProcessor
from lmms_textdom.tiny.common import instantiate, language_model_fields, save_checkpoint
from lmms_textdom.tiny.tokenizer import build_tokenizer

SPECIALS = ["<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", IMAGE_TOKEN, VIDEO_TOKEN]
# Qwen's chat layout: each visual wrapped in vision start/end around its single placeholder.
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif item['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% else %}{{ item['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
#: A thinking release (Qwen3-VL-Thinking's convention): ``<think>`` and ``</think>`` are added tokens
#: (not special, so decoded text keeps them), and the generation prompt opens the thinking itself.
THINK_TOKENS = ["<think>", "</think>"]
THINKING_CHAT_TEMPLATE = CHAT_TEMPLATE.replace("<|im_start|>assistant\n{% endif %}", "<|im_start|>assistant\n<think>\n{% endif %}")


def build_qwen2_5_vl(
    num_layers: int = 4,
    hidden_size: int = 32,
    intermediate_size: int | None = None,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    vision_depth: int = 3,
    vision_hidden_size: int = 32,
    vision_intermediate_size: int | None = None,
    vision_heads: int = 4,
    fullatt_block_indexes: tuple[int, ...] = (1,),
    window_size: int = 56,
    min_pixels: int = 28 * 28,
    max_pixels: int = 112 * 112,
    vocab_size: int | None = None,
    seed: int = 0,
    attn_implementation: str = "sdpa",
    initializer_range: float = 0.2,
    thinking: bool = False,
):
    """Returns (model, processor). A 56 x 56 image is a 4 x 4 patch grid, 4 merged image tokens.

    The default vision tower has 3 blocks, the middle one full attention, so the last
    full-attention block is not the last block and windows (56 px = 2 x 2 merged tokens) matter.
    ``thinking``: a thinking release (``THINK_TOKENS``, ``THINKING_CHAT_TEMPLATE``).
    """
    template = THINKING_CHAT_TEMPLATE if thinking else CHAT_TEMPLATE
    tok = build_tokenizer(SPECIALS, chat_template=template)
    if thinking:
        tok.add_tokens(THINK_TOKENS)
    ids = {name: tok.convert_tokens_to_ids(token) for name, token in (
        ("image_token_id", IMAGE_TOKEN), ("video_token_id", VIDEO_TOKEN),
        ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>"),
    )}  # fmt: skip
    head_dim = hidden_size // num_heads
    # the rotary sections (time, height, width) split head_dim / 2 frequencies as 2:3:3 (7B: 16, 24, 24)
    spatial = max(1, head_dim // 2 * 3 // 8)
    mrope_section = [head_dim // 2 - 2 * spatial, spatial, spatial]
    vision = dict(
        depth=vision_depth, hidden_size=vision_hidden_size, intermediate_size=vision_intermediate_size or 2 * vision_hidden_size,
        num_heads=vision_heads, out_hidden_size=hidden_size, patch_size=14, spatial_merge_size=2,
        temporal_patch_size=2, window_size=window_size, fullatt_block_indexes=list(fullatt_block_indexes),
        initializer_range=initializer_range,
    )  # fmt: skip
    text = language_model_fields(tok, num_layers, hidden_size, num_heads, num_kv_heads, initializer_range, vocab_size)
    text["intermediate_size"] = intermediate_size or 2 * hidden_size
    text["rope_parameters"] = {"rope_type": "default", "mrope_section": mrope_section, "rope_theta": 1e4}
    config = Qwen2_5_VLConfig(vision_config=vision, text_config=text, **ids)
    model = instantiate(Qwen2_5_VLForConditionalGeneration, config, tok, seed, attn_implementation)
    model.generation_config.eos_token_id = tok.eos_token_id
    image_processor = Qwen2VLImageProcessorPil(
        patch_size=14, merge_size=2, temporal_patch_size=2, size={"shortest_edge": min_pixels, "longest_edge": max_pixels}
    )
    processor = ImageOnlyQwenProcessor(image_processor, tok, chat_template=template)
    return model, processor


def save_qwen2_5_vl(path: str | Path, **kwargs) -> Path:
    """Build a tiny Qwen2.5-VL and save it as a checkpoint folder that ``from_pretrained`` loads."""
    return save_checkpoint(build_qwen2_5_vl, path, **kwargs)
