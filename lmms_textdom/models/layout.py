"""The order of a sample's text and visuals in its prompt, shared by the video families.

Samples without a video keep lmms-eval's layout: visuals in the task's order, then the text.
With a video, ``video_order`` decides: ``text_first`` puts the text before every visual, as
VLMEvalKit's message for video models does (``[question, video]``); ``video_first`` keeps the
visuals-then-text layout. The order is recorded per sample (``content_order``). A family adds
whatever else the two references' messages hold for it (VideoLLaMA3: VLMEvalKit's system turn
with ``text_first``, none with ``video_first`` as in lmms-eval's ``videollama3``).
"""

from __future__ import annotations

TEXT = "text"
VIDEO_ORDERS = ("text_first", "video_first")


def content_order(kinds: list[str], video_order: str) -> list[str]:
    """The sample's content kinds in prompt order, ``"text"`` included, e.g. ``["text", "video"]``."""
    if video_order not in VIDEO_ORDERS:
        raise ValueError(f"video_order must be one of {', '.join(VIDEO_ORDERS)}, got {video_order!r}")
    text_first = "video" in kinds and video_order == "text_first"
    return [TEXT, *kinds] if text_first else [*kinds, TEXT]
