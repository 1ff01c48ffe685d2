"""Tiny random-weight models of the real transformers classes, built offline in-process.

One builder per model family, shared by the tests, the demo and the benchmarks. The weights are
random: the numbers these models produce exercise the code paths, they say nothing about real models.
"""

from lmms_textdom.tiny.llama import build_llama
from lmms_textdom.tiny.llava import build_llava, save_llava
from lmms_textdom.tiny.qwen2_5_vl import build_qwen2_5_vl, save_qwen2_5_vl
from lmms_textdom.tiny.qwen2_audio import build_qwen2_audio, save_qwen2_audio
from lmms_textdom.tiny.tokenizer import build_tokenizer

__all__ = [
    "build_llama", "build_llava", "save_llava", "build_qwen2_5_vl", "save_qwen2_5_vl",
    "build_qwen2_audio", "save_qwen2_audio", "build_tokenizer",
]  # fmt: skip
