"""A tiny LLaVA-1.5 (CLIP vision tower + Llama) with its real processor classes."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor
from transformers.models.clip import CLIPImageProcessorPil

from lmms_textdom.tiny.checkpoint import save_built
from lmms_textdom.tiny.tokenizer import build_tokenizer

IMAGE_TOKEN = "<image>"
# LLaVA-1.5's Vicuna-style prompt, as in the llava-hf checkpoints.
CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'user' %}USER: "
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for item in message['content'] %}{% if item['type'] == 'image' %}<image>\n{% else %}{{ item['text'] }}{% endif %}{% endfor %}"
    "{% endif %} {% else %}ASSISTANT: {{ message['content'] }}</s>{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


def build_llava(
    num_layers: int = 4,
    image_size: int = 30,
    patch_size: int = 6,
    hidden_size: int = 32,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    vision_layers: int = 2,
    vision_hidden_size: int | None = None,
    vision_heads: int = 4,
    vocab_size: int | None = None,
    seed: int = 0,
    attn_implementation: str = "sdpa",
    initializer_range: float = 0.2,
):
    """Returns (model, processor). A 30 px image with 6 px patches expands to 25 image tokens.

    ``vocab_size`` larger than the tokenizer's pads the embedding (benchmarks at real vocabulary sizes).
    """
    tok = build_tokenizer([IMAGE_TOKEN], chat_template=CHAT_TEMPLATE)
    vision_hidden_size = vision_hidden_size or hidden_size
    vision = CLIPVisionConfig(
        hidden_size=vision_hidden_size,
        intermediate_size=4 * vision_hidden_size,
        num_hidden_layers=vision_layers,
        num_attention_heads=vision_heads,
        image_size=image_size,
        patch_size=patch_size,
    )
    text = LlamaConfig(
        vocab_size=vocab_size or len(tok),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        max_position_embeddings=32768,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        initializer_range=initializer_range,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=tok.convert_tokens_to_ids(IMAGE_TOKEN),
        vision_feature_select_strategy="default",
        vision_feature_layer=-2,
        initializer_range=initializer_range,
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration._from_config(copy.deepcopy(config), attn_implementation=attn_implementation).eval()
    model.generation_config.pad_token_id = tok.pad_token_id
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessorPil(
            size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
        ),
        tokenizer=tok,
        patch_size=patch_size,
        vision_feature_select_strategy="default",
        image_token=IMAGE_TOKEN,
        num_additional_image_tokens=1,
        chat_template=CHAT_TEMPLATE,
    )
    return model, processor


def save_llava(path: str | Path, **kwargs) -> Path:
    """Build a tiny LLaVA and save it as a checkpoint folder that ``from_pretrained`` loads."""
    return save_built(path, build_llava, **kwargs)
