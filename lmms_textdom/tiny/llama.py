"""A tiny Llama language model with grouped-query attention."""

from __future__ import annotations

from transformers import LlamaConfig, LlamaForCausalLM

from lmms_textdom.tiny.common import instantiate, language_model_fields
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
    fields = language_model_fields(tok, num_layers, hidden_size, num_heads, num_kv_heads, initializer_range, vocab_size)
    model = instantiate(LlamaForCausalLM, LlamaConfig(**fields), tok, seed, attn_implementation)
    return model, tok
