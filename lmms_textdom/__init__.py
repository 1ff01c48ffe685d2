"""lmms-textdom: measure text dominance (MDI / AEI) of multimodal LLMs, inside lmms-eval or on its own.

    from lmms_textdom import AttentionProbe, classify_tokens, summarize
    classes = classify_tokens(inputs["input_ids"], {"image": model.config.image_token_id}, inputs["attention_mask"])
    with AttentionProbe(model, classes) as probe:
        model.generate(**inputs)
    print(summarize(probe.stats()[0]).values())
"""

from lmms_textdom.core.metrics import aggregate, aggregate_samples, dominance, layer_groups, summarize
from lmms_textdom.core.stats import SampleStats

__version__ = "0.1.0"

__all__ = [
    "AttentionProbe",
    "PositionClasses",
    "SampleStats",
    "aggregate",
    "aggregate_samples",
    "classify_tokens",
    "dominance",
    "layer_groups",
    "output_lengths",
    "summarize",
]


def __getattr__(name):
    # torch-backed parts load on first use, so `import lmms_textdom.core.metrics` stays numpy-only.
    if name in ("AttentionProbe", "output_lengths"):
        from lmms_textdom.core import probe

        return getattr(probe, name)
    if name in ("PositionClasses", "classify_tokens"):
        from lmms_textdom.core import modality

        return getattr(modality, name)
    raise AttributeError(f"module 'lmms_textdom' has no attribute {name!r}")
