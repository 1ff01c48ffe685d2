"""A tiny Llama language model with grouped-query attention."""

from __future__ import annotations

import copy

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from lmms_textdom.tiny.tokenizer import build_tokenizer


def build_llama(
    num_layers: int = 4,
    hidden_size: int = 32,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    seed: int = 0,
    attn_implementation: str = "sdpa",
    tokenizer=None,
    vocab_size: int | None = None,
    initializer_range: float = 0.2,
):
    """Returns (model, tokenizer). ``vocab_size`` overrides the tokenizer's size (benchmarks)."""
    tok = tokenizer if tokenizer is not None else build_tokenizer()
    config = LlamaConfig(
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
        # Larger than the default 0.02 so greedy choices are decisive, not near-ties.
        initializer_range=initializer_range,
    )
    torch.manual_seed(seed)
    # _from_config keeps and mutates the config object: always hand it a copy.
    model = LlamaForCausalLM._from_config(copy.deepcopy(config), attn_implementation=attn_implementation).eval()
    model.generation_config.pad_token_id = tok.pad_token_id
    return model, tok
