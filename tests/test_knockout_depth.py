"""``knockout_layers`` is checked against the language model's depth, read from each family's own
translated config: plain-dict configs (Kimi-VL, GraphGPT) and remote-code model types that
AutoConfig cannot read (DAMO VideoLLaMA3 ``videollama3_qwen2``, ChatTS 0801 ``chatts``)."""

from __future__ import annotations

import pytest

from lmms_textdom.core.errors import UsageError

DEPTH = 3


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    from lmms_textdom.tiny.chatts import save_chatts
    from lmms_textdom.tiny.graphgpt import save_graphgpt
    from lmms_textdom.tiny.kimi_vl import save_kimi_vl
    from lmms_textdom.tiny.videollama3 import save_videollama3

    root = tmp_path_factory.mktemp("depth")
    return {
        "videollama3 damo": save_videollama3(root / "vl3-damo", layout="damo", num_layers=DEPTH),
        "videollama3 native": save_videollama3(root / "vl3-native", layout="native", num_layers=DEPTH),
        "chatts 0801": save_chatts(root / "chatts-0801", "0801", num_layers=DEPTH),
        "chatts original": save_chatts(root / "chatts-original", "original", num_layers=DEPTH),
        "graphgpt": save_graphgpt(root / "graphgpt", num_layers=DEPTH),
        "kimi_vl": save_kimi_vl(root / "kimi"),
    }


def adapter_class(name: str):
    from lmms_textdom.models.chatts.adapter import ChatTSTextdom
    from lmms_textdom.models.graphgpt.adapter import GraphGPTTextdom
    from lmms_textdom.models.kimi_vl.adapter import KimiVLTextdom
    from lmms_textdom.models.videollama3.adapter import VideoLlama3Textdom

    family = name.split()[0]
    return {"videollama3": VideoLlama3Textdom, "chatts": ChatTSTextdom, "graphgpt": GraphGPTTextdom, "kimi_vl": KimiVLTextdom}[family]


def text_depth(name: str, folder) -> int:
    """The depth as config.json states it, read here independently of the adapters."""
    import json

    config = json.loads((folder / "config.json").read_text())
    text = config.get("text_config", config)  # Kimi-VL and native VideoLLaMA3 nest it; the others are flat
    return text["num_hidden_layers"]


@pytest.mark.parametrize(
    "name", ["videollama3 damo", "videollama3 native", "chatts 0801", "chatts original", "graphgpt", "kimi_vl"]
)
def test_knockout_layers_are_parsed_against_the_language_models_depth(name, checkpoints):
    folder = checkpoints[name]
    depth = text_depth(name, folder)
    cls = adapter_class(name)
    model = cls(pretrained=str(folder), device="cpu", knockout_layers=f"1-{depth - 1}")
    assert model.knockout == frozenset(range(1, depth)) and model.language_model_depth() == depth
    with pytest.raises(UsageError, match=f"knockout_layers='{depth}' is invalid: .* whose layers are 0-{depth - 1}"):
        cls(pretrained=str(folder), device="cpu", knockout_layers=str(depth))
