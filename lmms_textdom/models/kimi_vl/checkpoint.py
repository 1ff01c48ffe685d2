"""Kimi-VL checkpoints (remote-code layout) loaded into transformers' native ``kimi_k25`` classes.

Kimi-VL's hub checkpoints carry ``model_type "kimi_vl"`` and code written for transformers 4.4x.
transformers 5.x has the same architecture as ``Kimi_K25ForConditionalGeneration`` (MoonViT +
``deepseek_v3``) and, under the ``kimi_k25`` model type, a conversion of the original MoonViT and
language-model keys (fused ``wqkv`` split and permuted for its rotary layout, per-expert weights
merged). What is left is translated here: the config, and the projector's names.
"""

from __future__ import annotations

import json
from typing import Any

from transformers import Kimi_K25Config, Kimi_K25ForConditionalGeneration, Kimi_K25VisionConfig

from lmms_textdom.core.errors import UsageError
from lmms_textdom.models.checkpoint import checkpoint_file

MODEL_TYPE = "kimi_vl"
#: the projector is ``multi_modal_projector.{pre_norm,linear_1,linear_2}`` in Kimi-VL; the built-in
#: kimi_k25 renames then move ``mm_projector.proj.{0,2}`` to ``model.mm_projector.{in,out}_proj``
KEY_MAPPING = {
    r"^multi_modal_projector\.pre_norm": "mm_projector.pre_norm",
    r"^multi_modal_projector\.linear_1": "mm_projector.proj.0",
    r"^multi_modal_projector\.linear_2": "mm_projector.proj.2",
}
#: MoonViT's 2-D rotary table (Rope2DPosEmb(max_height=512, max_width=512)) holds positions 0-511: at most 512 patches per side
MAX_PATCHES_PER_SIDE = 512


def read_kimi_config(pretrained: str, revision: str = "main") -> dict[str, Any]:
    """The checkpoint's ``config.json`` as a dict, after checking that it is a Kimi-VL checkpoint."""
    config = json.loads(checkpoint_file(pretrained, "config.json", revision).read_text())
    model_type = config.get("model_type")
    if model_type != MODEL_TYPE or "vision_config" not in config or "text_config" not in config:
        raise UsageError(
            f"kimi_vl_textdom loads Kimi-VL checkpoints (model_type {MODEL_TYPE!r}, e.g. moonshotai/Kimi-VL-A3B-Instruct); "
            f"{pretrained} is model_type {model_type!r}"
        )
    return config


def native_config(config: dict[str, Any]) -> Kimi_K25Config:
    """The ``kimi_k25`` config of a Kimi-VL ``config.json`` (MoonViT fields renamed, rope made explicit)."""
    vision = config["vision_config"]
    text = {k: v for k, v in config["text_config"].items() if k not in ("auto_map", "architectures")}
    text["model_type"] = "deepseek_v3"
    # the original has no multi-token-prediction layers; the native default would expect one
    text["num_mtp_layers"] = text.pop("num_nextn_predict_layers", 0) or 0
    native_vision = Kimi_K25VisionConfig(
        patch_size=vision["patch_size"],
        pos_emb_height=vision["init_pos_emb_height"],
        pos_emb_width=vision["init_pos_emb_width"],
        num_attention_heads=vision["num_attention_heads"],
        num_hidden_layers=vision["num_hidden_layers"],
        hidden_size=vision["hidden_size"],
        intermediate_size=vision["intermediate_size"],
        hidden_act="gelu_pytorch_tanh",
        merge_kernel_size=list(vision.get("merge_kernel_size", [2, 2])),
        rope_parameters={"rope_type": "axial", "rope_theta": 10000.0},
    )
    return Kimi_K25Config(
        text_config=text,
        vision_config=native_vision.to_dict(),
        projection_hidden_size=vision["hidden_size"],
        projection_layer_norm_eps=1e-5,
        image_token_id=config.get("media_placeholder_token_id", 163605),
        # both matrices are in the checkpoint; the native default (tied) would drop one
        tie_word_embeddings=False,
    )


def load_kimi_vl(pretrained: str, config: Kimi_K25Config, **from_pretrained_kwargs) -> Kimi_K25ForConditionalGeneration:
    """The native model with every checkpoint tensor in place; any key left over or missing is an error."""
    model, info = Kimi_K25ForConditionalGeneration.from_pretrained(
        pretrained, config=config, key_mapping=KEY_MAPPING, output_loading_info=True, **from_pretrained_kwargs
    )
    problems = {k: sorted(v) for k, v in info.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v}
    if problems:
        listing = "; ".join(f"{k}: {', '.join(map(str, v[:20]))}{' ...' if len(v) > 20 else ''}" for k, v in problems.items())
        raise RuntimeError(f"{pretrained} does not map onto Kimi_K25ForConditionalGeneration one to one ({listing})")
    return model
