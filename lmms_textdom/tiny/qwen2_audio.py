"""A tiny Qwen2-Audio (Whisper-style audio encoder + Qwen2) with its real processor classes."""

from __future__ import annotations

from pathlib import Path

from transformers import (
    Qwen2AudioConfig,
    Qwen2AudioEncoderConfig,
    Qwen2AudioForConditionalGeneration,
    Qwen2AudioProcessor,
    Qwen2Config,
    WhisperFeatureExtractor,
)

from lmms_textdom.tiny.common import instantiate, language_model_fields, save_checkpoint
from lmms_textdom.tiny.tokenizer import build_tokenizer

AUDIO_TOKEN = "<|AUDIO|>"
SPECIAL_TOKENS = ["<|im_start|>", "<|im_end|>", "<|audio_bos|>", AUDIO_TOKEN, "<|audio_eos|>"]
SAMPLING_RATE = 16000
# The chat template Qwen2-Audio-7B-Instruct ships. Unlike transformers' built-in default it spots an
# audio item by an "audio" or "audio_url" key, not by its type: {"type": "audio"} alone is dropped.
CHAT_TEMPLATE = (
    "{% set audio_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if 'audio' in content or 'audio_url' in content %}{% set audio_count.value = audio_count.value + 1 %}"
    "Audio {{ audio_count.value }}: <|audio_bos|><|AUDIO|><|audio_eos|>\n"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


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

    The processor carries the Instruct checkpoint's chat template (system prompt, then "Audio 1: <|audio_bos|>...").
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
    text = Qwen2Config(**language_model_fields(tok, num_layers, hidden_size, num_heads, num_kv_heads, initializer_range))
    config = Qwen2AudioConfig(audio_config=audio, text_config=text, audio_token_index=tok.convert_tokens_to_ids(AUDIO_TOKEN))
    model = instantiate(Qwen2AudioForConditionalGeneration, config, tok, seed, attn_implementation)
    return model, Qwen2AudioProcessor(feature_extractor=features, tokenizer=tok, chat_template=CHAT_TEMPLATE)


def save_qwen2_audio(path: str | Path, **kwargs) -> Path:
    """Build a tiny Qwen2-Audio and save it as a checkpoint folder that ``from_pretrained`` loads."""
    return save_checkpoint(build_qwen2_audio, path, **kwargs)
