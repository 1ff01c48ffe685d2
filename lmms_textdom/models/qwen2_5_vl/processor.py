"""Loading a Qwen2.5-VL processor with or without torchvision.

transformers' video processors import torchvision. Where it is missing (our CPU set-up),
``AutoProcessor`` cannot load a Qwen2.5-VL checkpoint, and a processor without a video processor
can neither be built nor saved with the stock class. ``ImageOnlyQwenProcessor`` is the stock
processor minus the video processor; ``load_qwen_processor`` prefers ``AutoProcessor`` and falls
back to it. Videos never go through either: ``qwen_inputs`` turns sampled frames into patches
with the image processor's own resize/normalise, so one code path serves both set-ups.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from transformers import AutoProcessor, AutoTokenizer, Qwen2_5_VLProcessor
from transformers.processing_utils import ProcessorMixin
from transformers.utils import cached_file

IMAGE_TOKEN = "<|image_pad|>"
VIDEO_TOKEN = "<|video_pad|>"
logger = logging.getLogger(__name__)


class ImageOnlyQwenProcessor(Qwen2_5_VLProcessor):
    """Qwen2.5-VL's processor with a tokenizer and an image processor only."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        # the stock __init__ insists on a video processor; set what it would set, then skip it
        self.image_token, self.video_token = IMAGE_TOKEN, VIDEO_TOKEN
        self.image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
        self.video_token_id = tokenizer.convert_tokens_to_ids(VIDEO_TOKEN)
        self.video_processor = None
        ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)


def _chat_template(pretrained: str, tokenizer, hub_kwargs: dict) -> str | None:
    """The processor's chat template file if the checkpoint has one, else the tokenizer's."""
    for name in ("chat_template.jinja", "chat_template.json"):
        path = cached_file(
            pretrained, name, _raise_exceptions_for_missing_entries=False,
            _raise_exceptions_for_connection_errors=False, revision=hub_kwargs.get("revision"),
        )  # fmt: skip
        if path:
            text = Path(path).read_text()
            return json.loads(text)["chat_template"] if name.endswith(".json") else text
    return tokenizer.chat_template


def load_qwen_processor(pretrained: str, **hub_kwargs):
    """``AutoProcessor`` when it loads; otherwise tokenizer + PIL image processor + chat template."""
    try:
        processor = AutoProcessor.from_pretrained(pretrained, **hub_kwargs)
        # AutoProcessor hands back a bare tokenizer when it cannot resolve the processor class
        if getattr(processor, "image_processor", None) is not None:
            return processor
        reason = f"it resolved to a {type(processor).__name__}"
    except Exception as exc:  # noqa: BLE001 - any failure of the stock route sends us to the fallback
        reason = f"{type(exc).__name__}: {exc}"
    logger.info(f"AutoProcessor could not load {pretrained} ({reason}); building it from its parts")
    from transformers.models.qwen2_vl import Qwen2VLImageProcessorPil

    tokenizer = AutoTokenizer.from_pretrained(pretrained, **hub_kwargs)
    image_processor = Qwen2VLImageProcessorPil.from_pretrained(pretrained, **hub_kwargs)
    return ImageOnlyQwenProcessor(image_processor, tokenizer, chat_template=_chat_template(pretrained, tokenizer, hub_kwargs))
