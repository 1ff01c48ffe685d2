"""A tiny LLaVA-NeXT (AnyRes crops) with its real processor classes."""

from __future__ import annotations

from pathlib import Path

from transformers import CLIPVisionConfig, LlamaConfig, LlavaNextConfig, LlavaNextForConditionalGeneration, LlavaNextProcessor
from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil

from lmms_textdom.tiny.common import instantiate, language_model_fields, save_checkpoint
from lmms_textdom.tiny.llava import CHAT_TEMPLATE, IMAGE_TOKEN
from lmms_textdom.tiny.tokenizer import build_tokenizer

# crops of 30 px (25 patches of 6 px); grids up to 2 x 2 crops, plus the base view
GRID_PINPOINTS = [[30, 60], [60, 30], [60, 60]]


def build_llava_next(num_layers: int = 4, hidden_size: int = 32, seed: int = 0, initializer_range: float = 0.2):
    """Returns (model, processor); a 40 x 70 image becomes 5 crops (base + 2 x 2) of 25 patches."""
    tok = build_tokenizer([IMAGE_TOKEN], chat_template=CHAT_TEMPLATE)
    vision = CLIPVisionConfig(
        hidden_size=hidden_size, intermediate_size=4 * hidden_size, num_hidden_layers=2, num_attention_heads=4,
        image_size=30, patch_size=6,
    )  # fmt: skip
    text = LlamaConfig(**language_model_fields(tok, num_layers, hidden_size, 4, 2, initializer_range))
    config = LlavaNextConfig(
        vision_config=vision, text_config=text, image_token_id=tok.convert_tokens_to_ids(IMAGE_TOKEN),
        image_grid_pinpoints=GRID_PINPOINTS, vision_feature_select_strategy="default", vision_feature_layer=-2,
        initializer_range=initializer_range,
    )  # fmt: skip
    model = instantiate(LlavaNextForConditionalGeneration, config, tok, seed, "sdpa")
    image_processor = LlavaNextImageProcessorPil(
        size={"shortest_edge": 30}, crop_size={"height": 30, "width": 30}, image_grid_pinpoints=GRID_PINPOINTS
    )
    processor = LlavaNextProcessor(
        image_processor=image_processor, tokenizer=tok, patch_size=6, vision_feature_select_strategy="default",
        image_token=IMAGE_TOKEN, num_additional_image_tokens=1, chat_template=CHAT_TEMPLATE,
    )  # fmt: skip
    return model, processor


def save_llava_next(path: str | Path, **kwargs) -> Path:
    return save_checkpoint(build_llava_next, path, **kwargs)
