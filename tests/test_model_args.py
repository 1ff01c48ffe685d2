"""model_args validation: every bad value fails at construction, naming what is accepted."""

from __future__ import annotations

import pytest

from lmms_textdom.core.errors import UsageError
from lmms_textdom.models.args import Arg, parse_model_args
from lmms_textdom.models.llava.adapter import LlavaHfTextdom

SPEC = (
    Arg("pretrained", "x", "checkpoint"),
    Arg("batch_size", 1, "batch", kind=int, check=lambda v: v >= 1, requirement="an integer >= 1"),
    Arg("textdom", True, "measure", kind=bool),
    Arg("ratio", 0.0, "ratio", kind=float),
    Arg("dtype", "auto", "dtype", choices=("auto", "float32")),
    Arg("device", None, "device"),
)


def test_lmms_eval_value_forms_are_converted():
    # lmms-eval's parser hands over bools, ints, floats, strings; batch_size "4" arrives as a string.
    args = parse_model_args(SPEC, {"batch_size": "4", "textdom": False, "ratio": 1, "device": "None"}, "m")
    assert args == {"pretrained": "x", "batch_size": 4, "textdom": False, "ratio": 1.0, "dtype": "auto", "device": None}


@pytest.mark.parametrize(
    "given,message",
    [
        ({"dtpye": "float32"}, r"unknown model_args dtpye. Valid model_args:\n  pretrained=x"),
        ({"batch_size": 0}, r"batch_size=0 is invalid; it must be an integer >= 1"),
        ({"batch_size": 2.5}, r"batch_size=2.5 is invalid: expected an integer"),
        ({"textdom": "maybe"}, r"textdom='maybe' is invalid: expected true or false"),
        ({"dtype": "int8"}, r"dtype='int8' is invalid; accepted: auto, float32"),
        ({"ratio": "half"}, r"ratio='half' is invalid"),
    ],
)
def test_bad_values_name_the_fix(given, message):
    with pytest.raises(UsageError, match=message):
        parse_model_args(SPEC, given, "m")


def test_adapter_rejects_bad_args_before_loading_anything(tmp_path):
    # the checkpoint folder does not even exist: validation must fail first
    with pytest.raises(UsageError, match="attn_implementation='flash' is invalid; it must be eager or a name registered in transformers' AttentionInterface"):
        LlavaHfTextdom(pretrained=str(tmp_path / "missing"), attn_implementation="flash")


def test_adapter_rejects_other_model_types(tmp_path):
    from transformers import LlamaConfig

    LlamaConfig(num_hidden_layers=1, hidden_size=8, intermediate_size=8, num_attention_heads=2).save_pretrained(tmp_path)
    with pytest.raises(UsageError, match="loads LLaVA-1.5 checkpoints .* model_type 'llama'"):
        LlavaHfTextdom(pretrained=str(tmp_path), device="cpu")


@pytest.mark.parametrize("pretrained", ["/no/such/folder", "not-a-user/not-a-checkpoint", "bad id with spaces"])
def test_a_checkpoint_that_is_not_there_stops_with_one_line(pretrained, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UsageError) as caught:
        LlavaHfTextdom(pretrained=pretrained, device="cpu")
    message = str(caught.value)
    assert "\n" not in message
    assert f"pretrained={pretrained} is neither a local checkpoint folder nor a hub id that can be reached" in message
    assert "HF_HUB_OFFLINE=1" in message


def test_a_folder_without_a_config_names_the_missing_file(tmp_path):
    with pytest.raises(UsageError, match=f"pretrained={tmp_path} is a folder but has no config.json"):
        LlavaHfTextdom(pretrained=str(tmp_path), device="cpu")
