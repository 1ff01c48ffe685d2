"""Tiny ChatTS checkpoints in the real layout: a Qwen2 language model plus ``ts_encoder.*`` weights.

``save_chatts(path, release)`` writes what bytedance-research/ChatTS-14B ships, at toy size:
config.json with the language model's fields at the top level and the encoder's under ``ts``
(original: ``model_type qwen2``, zero padding, no position embedding; 0801: ``model_type chatts``,
``use_position_embedding``), two safetensors shards with a ``model.safetensors.index.json``
(``model.*`` in the first, ``lm_head.*`` and ``ts_encoder.*`` in the second), the tokenizer with
``<ts>`` / ``<ts/>`` and the generation config. Patch sizes differ between the two toy releases
(8 and 4) as they do between the real ones (16 and 8).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import Qwen2Config, Qwen2ForCausalLM

from lmms_textdom.models.chatts.encoder import TimeSeriesEncoder
from lmms_textdom.tiny.common import instantiate, language_model_fields
from lmms_textdom.tiny.tokenizer import build_tokenizer

SPECIALS = ["<|im_start|>", "<|im_end|>", "<ts>", "<ts/>"]
RELEASES = ("original", "0801")


def ts_section(release: str, hidden_size: int, ts_layers: int) -> dict:
    if release == "original":
        return {"hidden_size": hidden_size, "num_features": 2, "num_layers": ts_layers, "patch_size": 8, "max_length": 2048}
    return {
        "hidden_size": hidden_size, "num_features": 2, "num_layers": ts_layers, "patch_size": 4,
        "use_position_embedding": True, "use_position_idx": False, "embedding_dim": 4,
        "max_sequence_length": 512, "max_length": 512,
    }  # fmt: skip


def build_chatts(release: str = "0801", num_layers: int = 4, hidden_size: int = 32, num_heads: int = 4,
                 num_kv_heads: int = 2, ts_layers: int = 3, seed: int = 0, initializer_range: float = 0.2):  # fmt: skip
    """Returns (language model, encoder, tokenizer, config.json dict) with random weights."""
    if release not in RELEASES:
        raise ValueError(f"release must be one of {RELEASES}, got {release!r}")
    tok = build_tokenizer(SPECIALS)
    fields = language_model_fields(tok, num_layers, hidden_size, num_heads, num_kv_heads, initializer_range)
    config = Qwen2Config(**fields, tie_word_embeddings=False, rope_theta=1e6, rms_norm_eps=1e-6, use_sliding_window=False)
    model = instantiate(Qwen2ForCausalLM, config, tok, seed, "sdpa")
    ts = ts_section(release, hidden_size, ts_layers)
    torch.manual_seed(seed + 1)
    encoder = TimeSeriesEncoder(ts, pad_with_last_value=release == "0801").eval()
    raw = {k: v for k, v in config.to_dict().items() if k not in ("architectures", "model_type", "transformers_version")}
    raw.update({
        "architectures": ["Qwen2TSForCausalLM"],
        "auto_map": {"AutoConfig": "configuration_qwen2.Qwen2TSConfig", "AutoModelForCausalLM": "modeling_qwen2.Qwen2TSForCausalLM",
                     "AutoProcessor": "processing_qwen2_ts.Qwen2TSProcessor"},
        "model_type": "qwen2" if release == "original" else "chatts",
        "ts": ts,
        "ts_token_start_index": tok.convert_tokens_to_ids("<ts>"),
        "ts_token_end_index": tok.convert_tokens_to_ids("<ts/>"),
    })  # fmt: skip
    return model, encoder, tok, raw


def save_chatts(path: str | Path, release: str = "0801", **kwargs) -> Path:
    """Build a tiny ChatTS and write it as a checkpoint folder in the real file layout."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model, encoder, tok, raw = build_chatts(release, **kwargs)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    state.update({f"ts_encoder.{k}": v.contiguous() for k, v in encoder.state_dict().items()})
    shards = {"model-00001-of-00002.safetensors": {}, "model-00002-of-00002.safetensors": {}}
    for key, tensor in state.items():
        shards["model-0000%d-of-00002.safetensors" % (1 if key.startswith("model.") else 2)][key] = tensor
    weight_map = {}
    for name, tensors in shards.items():
        save_file(tensors, str(path / name), metadata={"format": "pt"})
        weight_map.update({key: name for key in tensors})
    total = sum(t.numel() * t.element_size() for t in state.values())
    (path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    (path / "config.json").write_text(json.dumps(raw, indent=2))
    model.generation_config.save_pretrained(path)
    tok.save_pretrained(path)
    return path
