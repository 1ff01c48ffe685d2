"""VideoLLaMA3 checkpoints in either layout, loaded into transformers' native ``video_llama_3`` classes.

DAMO's hub checkpoints (``DAMO-NLP-SG/VideoLLaMA3-7B``, ``-2B``, ``-7B-Image``) are remote code for
transformers 4.46: ``model_type "videollama3_qwen2"``, a flat Qwen2 config with the SigLIP-NaViT
encoder in ``vision_encoder_config``, weights under ``model.vision_encoder``, ``model.mm_projector``
and ``model.{embed_tokens,layers,norm}``. The native classes hold the same modules under other
names, so a translated config and three renames load every tensor; nothing runs remote code.
Native ``-HF`` checkpoints (``model_type "video_llama_3"``) load as they are.
"""

from __future__ import annotations

import json

from transformers import VideoLlama3Config, VideoLlama3ForConditionalGeneration

from lmms_textdom.core.errors import UsageError
from lmms_textdom.models.checkpoint import checkpoint_file

DAMO_MODEL_TYPE = "videollama3_qwen2"
NATIVE_MODEL_TYPE = "video_llama_3"
#: DAMO weight names -> native ones (``lm_head`` is the same in both)
DAMO_KEY_MAPPING = {
    r"^model\.vision_encoder\.": "model.vision_model.",
    r"^model\.mm_projector\.": "model.projector.",
    r"^model\.(embed_tokens|layers|norm)": r"model.language_model.\1",
}
#: the placeholders our prompts use (both are in the Qwen2.5 vocabulary, so in every VideoLLaMA3 tokenizer)
IMAGE_PAD, VIDEO_PAD = "<|image_pad|>", "<|video_pad|>"
#: where the chat model's reply ends: the end of its turn (the template closes every turn with it;
#: DAMO's ``mm_infer`` stops on the tokenizer's eos, ``<|im_end|>`` in Qwen2.5-Instruct's tokenizer)
#: and the end of text (151645 and 151643 in every Qwen2.5 vocabulary)
STOP_TOKENS = ("<|im_end|>", "<|endoftext|>")
#: DAMO config fields that describe the wrapper, not the Qwen2 language model
DAMO_ONLY_FIELDS = (
    "vision_encoder", "vision_encoder_config", "mm_projector_type", "use_token_compression", "image_token_index",
    "architectures", "auto_map", "model_type", "transformers_version", "torch_dtype", "dtype",
)  # fmt: skip


def checkpoint_config_dict(pretrained: str, revision: str = "main") -> dict:
    """The checkpoint's ``config.json`` as a dict, after checking that it is a VideoLLaMA3 of either layout."""
    config = json.loads(checkpoint_file(pretrained, "config.json", revision).read_text())
    model_type = config.get("model_type")
    if model_type not in (DAMO_MODEL_TYPE, NATIVE_MODEL_TYPE):
        raise UsageError(
            f"videollama3_textdom loads VideoLLaMA3 checkpoints (model_type {DAMO_MODEL_TYPE!r}, as in "
            f"DAMO-NLP-SG/VideoLLaMA3-7B, or {NATIVE_MODEL_TYPE!r}, as in lkhl/VideoLLaMA3-2B-Image-HF); "
            f"{pretrained} is model_type {model_type!r}"
        )
    if model_type == DAMO_MODEL_TYPE:
        projector = config.get("mm_projector_type", "mlp2x_gelu")
        if projector != "mlp2x_gelu":
            raise UsageError(f"{pretrained}: mm_projector_type {projector!r}; the native VideoLLaMA3 projector is mlp2x_gelu")
        if not config.get("vision_encoder_config"):
            raise UsageError(f"{pretrained}: config.json has no vision_encoder_config (a training checkpoint that names its encoder only)")
    return config


def uses_token_compression(pretrained: str, revision: str = "main") -> bool:
    """Whether the checkpoint compresses video tokens: DAMO's ``config.json`` ``use_token_compression``,
    the native layout's ``video_preprocessor_config.json`` one; both classes default to true."""
    config = checkpoint_config_dict(pretrained, revision)
    if config["model_type"] == NATIVE_MODEL_TYPE:
        path = checkpoint_file(pretrained, "video_preprocessor_config.json", revision, required=False)
        config = json.loads(path.read_text()) if path else {}
    return bool(config.get("use_token_compression", True))


def native_config(damo: dict, image_token_id: int, video_token_id: int) -> VideoLlama3Config:
    """The native config of a DAMO ``videollama3_qwen2`` config dict."""
    text = {k: v for k, v in damo.items() if k not in DAMO_ONLY_FIELDS}
    text["model_type"] = "qwen2"
    vision = {k: v for k, v in damo["vision_encoder_config"].items() if k not in ("model_type", "architectures", "auto_map")}
    vision["rope_parameters"] = {"rope_type": "axial", "rope_theta": 10000.0}  # the original's fixed theta
    return VideoLlama3Config(
        text_config=text, vision_config=vision, image_token_id=image_token_id, video_token_id=video_token_id,
        tie_word_embeddings=bool(damo.get("tie_word_embeddings", False)),
    )  # fmt: skip


def text_config(config: dict):
    """The language model's config of either layout's config.json dict (no tokenizer, no weights)."""
    if config["model_type"] == DAMO_MODEL_TYPE:
        return native_config(config, image_token_id=0, video_token_id=0).text_config  # the ids do not shape it
    return VideoLlama3Config.from_dict(config).text_config


def placeholder_ids(tokenizer) -> tuple[int, int]:
    ids = tokenizer.convert_tokens_to_ids([IMAGE_PAD, VIDEO_PAD])
    if tokenizer.unk_token_id in ids or None in ids:
        raise UsageError(f"the checkpoint's tokenizer lacks {IMAGE_PAD} / {VIDEO_PAD} (every Qwen2.5 tokenizer has them)")
    return ids[0], ids[1]


def load_videollama3(pretrained: str, tokenizer, revision: str = "main", **kwargs) -> VideoLlama3ForConditionalGeneration:
    """The model in native classes; any checkpoint tensor left unused, or weight left unset, is an error."""
    config = checkpoint_config_dict(pretrained, revision)
    image_id, video_id = placeholder_ids(tokenizer)
    extra = {}
    if config["model_type"] == DAMO_MODEL_TYPE:
        extra = {"config": native_config(config, image_id, video_id), "key_mapping": DAMO_KEY_MAPPING}
    model, info = VideoLlama3ForConditionalGeneration.from_pretrained(
        pretrained, revision=revision, output_loading_info=True, **extra, **kwargs
    )
    problems = {k: sorted(v) for k, v in info.items() if k in ("missing_keys", "unexpected_keys", "mismatched_keys") and v}
    if problems:
        raise UsageError(f"{pretrained} does not fit the native VideoLLaMA3 classes: {problems}")
    model.config.image_token_id, model.config.video_token_id = image_id, video_id
    model.generation_config.eos_token_id = stop_token_ids(model.generation_config.eos_token_id, tokenizer)
    return model


def stop_token_ids(configured: int | list[int] | None, tokenizer) -> list[int]:
    """The checkpoint's own eos ids, then every ``STOP_TOKENS`` id it lacks (a generation_config.json
    that names only ``<|endoftext|>``, or none at all, would let answers run past the reply)."""
    ids = [] if configured is None else [configured] if isinstance(configured, int) else list(configured)
    for token in STOP_TOKENS:
        token_id = tokenizer.convert_tokens_to_ids(token)
        if token_id is not None and token_id != tokenizer.unk_token_id and token_id not in ids:
            ids.append(token_id)
    return ids
