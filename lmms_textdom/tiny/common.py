"""What every tiny builder shares: the language-model config fields, instantiation, saving."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Callable

import torch


def language_model_fields(
    tok, num_layers: int, hidden_size: int, num_heads: int, num_kv_heads: int, initializer_range: float, vocab_size: int | None = None
) -> dict:
    """Sizes and special-token ids of a tiny decoder config (LlamaConfig, Qwen2Config, ...)."""
    return {
        "vocab_size": vocab_size or len(tok),
        "hidden_size": hidden_size,
        "intermediate_size": 2 * hidden_size,
        "num_hidden_layers": num_layers,
        "num_attention_heads": num_heads,
        "num_key_value_heads": num_kv_heads,
        "max_position_embeddings": 32768,
        "bos_token_id": tok.bos_token_id,
        "eos_token_id": tok.eos_token_id,
        "pad_token_id": tok.pad_token_id,
        # Larger than the default 0.02 so greedy choices are decisive, not near-ties.
        "initializer_range": initializer_range,
    }


def instantiate(model_class, config, tok, seed: int, attn_implementation: str):
    """Random weights from ``seed``, in eval mode, padding with the tokenizer's pad id."""
    torch.manual_seed(seed)
    # _from_config keeps and mutates the config object: always hand it a copy.
    model = model_class._from_config(copy.deepcopy(config), attn_implementation=attn_implementation).eval()
    model.generation_config.pad_token_id = tok.pad_token_id
    return model


def save_checkpoint(build: Callable, path: str | Path, **kwargs) -> Path:
    """Build (model, processor) and save them as a checkpoint folder that ``from_pretrained`` loads."""
    path = Path(path)
    model, processor = build(**kwargs)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path
