"""A tiny Qwen2-Audio (Whisper-style audio encoder + Qwen2) with its real processor classes."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from transformers import (
    Qwen2AudioConfig,
    Qwen2AudioEncoderConfig,
    Qwen2AudioForConditionalGeneration,
    Qwen2AudioProcessor,
    Qwen2Config,
    WhisperFeatureExtractor,
)

from lmms_textdom.tiny.tokenizer import build_tokenizer

AUDIO_TOKEN = "<|AUDIO|>"
SPECIAL_TOKENS = ["<|im_start|>", "<|im_end|>", "<|audio_bos|>", AUDIO_TOKEN, "<|audio_eos|>"]
SAMPLING_RATE = 16000


def build_qwen2_audio(
    num_layers: int = 4,
    hidden_size: int = 32,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    audio_layers: int = 2,
    seed: int = 0,
    attn_implementation: str = "sdpa",
    initializer_range: float = 0.2,
):
    """Returns (model, processor). One second of 16 kHz audio expands to 25 ``<|AUDIO|>`` tokens.

    The processor keeps its default chat template (system prompt, then "Audio 1: <|audio_bos|>...").
    """
    tok = build_tokenizer(SPECIAL_TOKENS)
    # 128 mel bins as in Qwen2-Audio (Whisper's default is 80); 30 s windows of 3000 frames.
    features = WhisperFeatureExtractor(feature_size=128, sampling_rate=SAMPLING_RATE, hop_length=160, chunk_length=30, n_fft=400)
    audio = Qwen2AudioEncoderConfig(
        num_mel_bins=128,
        encoder_layers=audio_layers,
        encoder_attention_heads=4,
        encoder_ffn_dim=2 * hidden_size,
        d_model=hidden_size,
        max_source_positions=1500,
    )
    text = Qwen2Config(
        vocab_size=len(tok),
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
    config = Qwen2AudioConfig(audio_config=audio, text_config=text, audio_token_index=tok.convert_tokens_to_ids(AUDIO_TOKEN))
    torch.manual_seed(seed)
    # _from_config keeps and mutates the config object: always hand it a copy.
    model = Qwen2AudioForConditionalGeneration._from_config(copy.deepcopy(config), attn_implementation=attn_implementation).eval()
    model.generation_config.pad_token_id = tok.pad_token_id
    return model, Qwen2AudioProcessor(feature_extractor=features, tokenizer=tok)


def save_qwen2_audio(path: str | Path, **kwargs) -> Path:
    """Build a tiny Qwen2-Audio and save it as a checkpoint folder that ``from_pretrained`` loads."""
    path = Path(path)
    model, processor = build_qwen2_audio(**kwargs)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path
