"""Compiled decoding: ``generate`` with a static KV cache whose decoding step transformers compiles.

transformers compiles the model's forward for the decoding steps (``torch.compile``, one graph per
step shape) when the cache is static and the device is a GPU, or on any device when the compile
config says so; the prompt's pass runs eagerly. The attention probe records inside that graph (see
``core/probe.py``, compiled decoding).

    out = model.generate(**inputs, **compiled_decoding())
"""

from __future__ import annotations

from transformers import CompileConfig


def compiled_decoding(backend: str = "inductor") -> dict:
    """``generate`` keyword arguments: a static cache, its decoding step compiled as one graph on any device.

    ``fullgraph=True``: a graph break fails loudly instead of falling back to slower partial graphs.
    """
    # inductor's default mode captures CUDA graphs on a GPU; other backends take no mode
    config = CompileConfig(fullgraph=True, backend=backend, mode="reduce-overhead" if backend == "inductor" else None)
    config._compile_all_devices = True  # generate compiles on GPUs only unless told (transformers' switch for this)
    return {"cache_implementation": "static", "compile_config": config}
