"""A tiny VideoLLaMA3: SigLIP-NaViT tower + 2-layer MLP projector + Qwen2, saved in DAMO's or the native layout.

The DAMO layout is what ``DAMO-NLP-SG/VideoLLaMA3-7B`` ships: a flat ``videollama3_qwen2`` config with
``vision_encoder_config``, weights under ``model.vision_encoder`` / ``model.mm_projector`` /
``model.{embed_tokens,layers,norm}``, a Qwen2-style tokenizer with ``<image>`` and a
``Videollama3ImageProcessor`` preprocessor config. The weights are random.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from safetensors.torch import save_file
from transformers import VideoLlama3ForConditionalGeneration

from lmms_textdom.models.videollama3.checkpoint import IMAGE_PAD, VIDEO_PAD, native_config
from lmms_textdom.tiny.common import instantiate, language_model_fields
from lmms_textdom.tiny.tokenizer import build_tokenizer

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", IMAGE_PAD, VIDEO_PAD]
#: native weight names -> DAMO ones (the inverse of the loader's key mapping)
TO_DAMO = {
    r"^model\.vision_model\.": "model.vision_encoder.",
    r"^model\.projector\.": "model.mm_projector.",
    r"^model\.language_model\.": "model.",
}


def damo_config(tok, num_layers: int = 4, hidden_size: int = 32, num_heads: int = 4, num_kv_heads: int = 2,
                vision_layers: int = 2, vision_hidden_size: int = 32, vision_heads: int = 4,
                initializer_range: float = 0.2, intermediate_size: int | None = None,
                vision_intermediate_size: int | None = None) -> dict:  # fmt: skip
    text = language_model_fields(tok, num_layers, hidden_size, num_heads, num_kv_heads, initializer_range)
    text["intermediate_size"] = intermediate_size or 2 * hidden_size
    vision = {
        "model_type": "videollama3_vision_encoder", "hidden_size": vision_hidden_size,
        "intermediate_size": vision_intermediate_size or 2 * vision_hidden_size, "num_hidden_layers": vision_layers,
        "num_attention_heads": vision_heads, "num_channels": 3, "patch_size": 14,
        "hidden_act": "gelu_pytorch_tanh", "layer_norm_eps": 1e-6, "attention_dropout": 0.0,
    }  # fmt: skip
    return {
        **text, "model_type": "videollama3_qwen2", "architectures": ["Videollama3Qwen2ForCausalLM"],
        "auto_map": {"AutoConfig": "configuration_videollama3.Videollama3Qwen2Config",
                     "AutoModelForCausalLM": "modeling_videollama3.Videollama3Qwen2ForCausalLM"},
        "hidden_act": "silu", "rms_norm_eps": 1e-6, "rope_theta": 1e6, "tie_word_embeddings": False,
        "vision_encoder": None, "vision_encoder_config": vision, "mm_projector_type": "mlp2x_gelu",
        "use_token_compression": True, "image_token_index": tok.convert_tokens_to_ids("<image>"),
    }  # fmt: skip


def build_videollama3(seed: int = 0, attn_implementation: str = "sdpa", **sizes):
    """(native model, tokenizer, DAMO config dict) with random weights."""
    tok = build_tokenizer(SPECIALS)
    damo = damo_config(tok, **sizes)
    config = native_config(damo, *tok.convert_tokens_to_ids([IMAGE_PAD, VIDEO_PAD]))
    model = instantiate(VideoLlama3ForConditionalGeneration, config, tok, seed, attn_implementation)
    # the end of text only, as the native -HF conversion's config states (151643): not the end of a turn
    model.generation_config.eos_token_id = tok.convert_tokens_to_ids("<|endoftext|>")
    return model, tok, damo


def damo_state_dict(model) -> dict:
    renamed = {}
    for key, tensor in model.state_dict().items():
        for pattern, target in TO_DAMO.items():
            key = re.sub(pattern, target, key)
        renamed[key] = tensor.contiguous()
    return renamed


def save_videollama3(path: str | Path, layout: str = "damo", token_compression: bool = True, **kwargs) -> Path:
    """Save a tiny VideoLLaMA3 checkpoint folder in ``layout`` "damo" (remote-code keys) or "native".

    ``token_compression``: what the checkpoint says of video token compression (DAMO: ``config.json``
    ``use_token_compression``; native: ``video_preprocessor_config.json``).
    """
    path = Path(path)
    model, tok, damo = build_videollama3(**kwargs)
    damo["use_token_compression"] = token_compression
    tok.save_pretrained(path)
    model.generation_config.save_pretrained(path)
    preprocessor = {"image_mean": [0.5] * 3, "image_std": [0.5] * 3, "patch_size": 14}
    if layout == "native":
        model.save_pretrained(path)
        preprocessor["image_processor_type"] = "VideoLlama3ImageProcessor"
        video = {"video_processor_type": "VideoLlama3VideoProcessor", "image_mean": [0.5] * 3, "image_std": [0.5] * 3,
                 "patch_size": 14, "use_token_compression": token_compression}  # fmt: skip
        (path / "video_preprocessor_config.json").write_text(json.dumps(video, indent=2))
    elif layout == "damo":
        save_file(damo_state_dict(model), str(path / "model.safetensors"), metadata={"format": "pt"})
        (path / "config.json").write_text(json.dumps(damo, indent=2))
        preprocessor.update(image_processor_type="Videollama3ImageProcessor", min_tokens=16, max_tokens=16384)
    else:
        raise ValueError(f"layout must be 'damo' or 'native', got {layout!r}")
    (path / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2))
    return path

