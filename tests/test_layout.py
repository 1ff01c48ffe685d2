"""The text-vs-visuals order shared by the video families (``video_order``)."""

from __future__ import annotations

import pytest

from lmms_textdom.core.errors import UsageError
from lmms_textdom.models.args import VIDEO_ORDER, parse_model_args
from lmms_textdom.models.layout import content_order


def test_question_first_only_when_a_video_is_there():
    assert content_order(["video"], "text_first") == ["text", "video"]  # VLMEvalKit's [question, video]
    assert content_order(["image", "video"], "text_first") == ["text", "image", "video"]
    assert content_order(["image", "image"], "text_first") == ["image", "image", "text"]  # lmms-eval's layout
    assert content_order([], "text_first") == ["text"]
    assert content_order(["video"], "video_first") == ["video", "text"]
    with pytest.raises(ValueError, match="video_order must be one of text_first, video_first"):
        content_order(["video"], "sideways")


def test_video_order_model_arg_defaults_to_vlmevalkit_and_refuses_others():
    assert parse_model_args([VIDEO_ORDER], {}, "m") == {"video_order": "text_first"}
    with pytest.raises(UsageError, match="accepted: text_first, video_first"):
        parse_model_args([VIDEO_ORDER], {"video_order": "after"}, "m")
