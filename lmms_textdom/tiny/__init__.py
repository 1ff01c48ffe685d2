"""Tiny random-weight models of the real transformers classes, built offline in-process.

One builder per model family, shared by the tests, the demo and the benchmarks. The weights are
random: the numbers these models produce exercise the code paths, they say nothing about real models.
The builders load on first use, so the commands that only find an already built default
(``tiny.defaults``) do not import transformers.
"""

import importlib

_HOMES = {
    "build_llama": "llama", "build_llava": "llava", "save_llava": "llava",
    "build_qwen2_5_vl": "qwen2_5_vl", "save_qwen2_5_vl": "qwen2_5_vl",
    "build_qwen2_audio": "qwen2_audio", "save_qwen2_audio": "qwen2_audio", "build_tokenizer": "tokenizer",
}  # fmt: skip
__all__ = list(_HOMES)


def __getattr__(name):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_HOMES[name]}"), name)
