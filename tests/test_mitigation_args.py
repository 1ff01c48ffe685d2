"""Bad switch values and combinations fail with a clear error before any weights load; the record says
which switch ran; the sweep's paired statistics against hand-computed cases."""

from __future__ import annotations

import math

import pytest

from lmms_textdom.core.errors import UsageError
from lmms_textdom.mitigations.settings import (
    Switches, default_boost_layers, default_shift_layers, switch_label, switch_settings, switches_from_args,
)  # fmt: skip
from lmms_textdom.models.llava.adapter import LlavaHfTextdom


@pytest.fixture()
def no_weights(monkeypatch):
    """Loading weights is a test failure: the error must come first."""

    def load(self):
        raise AssertionError("weights were loaded before the bad value was refused")

    monkeypatch.setattr(LlavaHfTextdom, "load", load)


@pytest.mark.parametrize(
    "args,message",
    [
        ({"attn_boost": -0.2}, r"attn_boost=-0.2 with attn_boost_mode=pai: PAI's alpha must be >= 0"),
        ({"attn_boost": -1, "attn_boost_mode": "scale"}, r"1 \+ alpha must be > 0, so alpha > -1"),
        ({"attn_boost": 0.5, "attn_boost_mode": "both"}, r"attn_boost_mode='both' is invalid; accepted: pai, scale"),
        ({"attn_boost": 0.5, "attn_boost_layers": "2-9"}, r"attn_boost_layers='2-9' is invalid: '2-9' lies outside the language model, whose layers are 0-3"),
        ({"attn_boost_layers": "early"}, r"attn_boost_layers='early' is invalid; it must be layer indices and ranges"),
        ({"attn_shift": "0:1"}, r"attn_shift='0:1' is invalid; it must be ENH:SUP, two numbers > 0"),
        ({"attn_shift": "-1.2:0.9"}, r"attn_shift='-1.2:0.9' is invalid"),
        ({"attn_shift": "1.2"}, r"attn_shift='1.2' is invalid; it must be ENH:SUP"),
        ({"attn_shift": "1.2:0.9", "attn_shift_layers": "5"}, r"attn_shift_layers='5' is invalid: '5' lies outside"),
        ({"vcd_alpha": -1}, r"vcd_alpha=-1 is invalid; it must be a number >= 0"),
        ({"vcd_beta": 1.5}, r"vcd_beta=1.5 is invalid; it must be a number with 0 <= beta <= 1"),
        ({"vcd_noise": 1000}, r"vcd_noise=1000 is invalid; it must be an integer 0 .. 999"),
        ({"blind": True, "prune_ratio": 0.5}, r"blind=true removes the non-text input, which prune_ratio act\(s\) on"),
        ({"blind": True, "nontext_repeat": 2, "vcd_alpha": 1}, r"which nontext_repeat, vcd_alpha act\(s\) on"),
        ({"blind": True, "knockout_layers": "1"}, r"which knockout_layers act\(s\) on"),
        ({"vcd_alpha": 1, "knockout_score": True, "knockout_layers": "1"}, r"knockout_score compares with a second, plain generate"),
        ({"attn_boost": 0.3, "attn_boost_mode": "scale", "attn_implementation": "flex_attention"}, r"attn_boost_mode=scale adds a bias to the attention mask"),
    ],
)
def test_bad_values_are_refused_before_loading(tiny_llava_dir, no_weights, args, message):
    with pytest.raises(UsageError, match=message):
        LlavaHfTextdom(pretrained=str(tiny_llava_dir), device="cpu", **args)


def test_vcd_with_beam_search_is_refused(tiny_llava_dir):
    adapter = LlavaHfTextdom(pretrained=str(tiny_llava_dir), device="cpu", textdom=False, vcd_alpha=1.0)
    with pytest.raises(UsageError, match=r"vcd_alpha contrasts greedy or sampled decoding, not beam search \(the task asks num_beams=3\)"):
        adapter.generation_kwargs({"num_beams": 3})
    plain = LlavaHfTextdom(pretrained=str(tiny_llava_dir), device="cpu", textdom=False)
    assert plain.generation_kwargs({"num_beams": 3})[0]["num_beams"] == 3


def test_measure_refuses_the_generate_only_switches():
    from argparse import Namespace

    from lmms_textdom.measure.command import model_kwargs

    for arg in ("vcd_alpha=0.5", "blind=true"):
        args = Namespace(model_args=f"pretrained=x,{arg}", batch_size=1, device="cpu")
        with pytest.raises(UsageError, match=f"model_arg {arg.split('=')[0]} works on generate runs only"):
            model_kwargs(args, LlavaHfTextdom)


def test_default_layers_scale_with_depth():
    assert default_boost_layers(32) == set(range(2, 32))  # PAI: layers 2-31 of LLaVA-1.5
    assert default_shift_layers(32) == set(range(9, 15))  # ClearSight: 8 < l < 15
    assert default_boost_layers(8) == set(range(2, 8)) and default_shift_layers(8) == {2, 3, 4}
    assert default_boost_layers(1) == {0} and default_shift_layers(1) == {0}


def test_neutral_values_switch_everything_off_and_the_record_names_what_ran():
    neutral = switches_from_args({"attn_boost": 0, "attn_shift": "1:1", "vcd_alpha": 0, "vcd_beta": 0.5}, 8)
    assert neutral == Switches(vcd_beta=0.5) and not neutral.any and neutral.record() == {}
    on = switches_from_args({"attn_boost": 0.2, "attn_shift": "1.15:0.95", "vcd_alpha": 1, "vcd_noise": 999, "attn_shift_layers": "3+5"}, 8)
    assert on.record() == {
        "attn_boost": 0.2, "attn_boost_mode": "pai", "attn_boost_layers": "2-7", "attn_shift": "1.15:0.95", "attn_shift_layers": "3+5",
        "vcd_alpha": 1.0, "vcd_beta": 0.1, "vcd_noise": 999, "vcd_seed": 0,
    }  # fmt: skip
    # a results file's model_args text and a sample's record read alike; neutral values as nothing
    assert switch_settings({"attn_boost": "0.2", "attn_boost_layers": "7+2-6", "attn_shift": "1:1", "vcd_alpha": "0"}) == {
        "attn_boost": 0.2, "attn_boost_mode": "pai", "attn_boost_layers": "2-7",
    }  # fmt: skip
    assert switch_label(on.record()) == ["pai 0.2 @2-7", "shift 1.15:0.95 @3+5", "vcd a=1 b=0.1 T=999"]
    assert switch_label({"blind": True}) == ["blind"]


# ----- the sweep's paired statistics ------------------------------------------------------------------


def test_mcnemar_exact_against_hand_computed_cases():
    from lmms_textdom.report.paired import mcnemar_exact

    # b = 1 pair right only before, c = 4 right only after: p = 2 * P[Bin(5, 1/2) <= 1] = 2 * 6/32
    before = [1, 0, 0, 0, 0, 1, 1, 0]
    after = [0, 1, 1, 1, 1, 1, 1, 0]
    assert mcnemar_exact(before, after) == pytest.approx(12 / 32)
    # b = 0, c = 6: 2 * (1/64)
    assert mcnemar_exact([0] * 6, [1] * 6) == pytest.approx(2 / 64)
    # balanced discordance: the one-sided tail exceeds 1/2, so p is capped at 1
    assert mcnemar_exact([1, 0, 1, 0], [0, 1, 0, 1]) == 1.0
    assert mcnemar_exact([1, 0, 1], [1, 0, 1]) == 1.0  # no discordant pair
    # b = 2, c = 10: 2 * (1 + 12 + 66) / 4096
    assert mcnemar_exact([1] * 2 + [0] * 10, [0] * 2 + [1] * 10) == pytest.approx(2 * 79 / 4096)
    with pytest.raises(ValueError, match="0/1 outcomes"):
        mcnemar_exact([0.5], [1])


def test_paired_bootstrap_against_hand_computed_cases():
    from lmms_textdom.report.paired import paired_bootstrap

    # every pair differs by exactly 0.25: every resample's mean is 0.25
    same = paired_bootstrap([0.0, 0.5, 1.0], [0.25, 0.75, 1.25], 200, 0)
    assert (same.mean, same.low, same.high, same.pairs) == (pytest.approx(0.25), pytest.approx(0.25), pytest.approx(0.25), 3)
    # two pairs, differences 0 and 1: resample means are 0, 1/2 or 1 with odds 1:2:1
    two = paired_bootstrap([0, 0], [0, 1], 4000, 1)
    assert two.mean == 0.5 and two.low == 0.0 and two.high == 1.0
    # the interval holds the mean, is seeded (same seed, same interval) and narrows with more pairs
    small = paired_bootstrap([0, 1, 0, 1] * 3, [1, 1, 0, 1] * 3, 1000, 7)
    again = paired_bootstrap([0, 1, 0, 1] * 3, [1, 1, 0, 1] * 3, 1000, 7)
    large = paired_bootstrap([0, 1, 0, 1] * 30, [1, 1, 0, 1] * 30, 1000, 7)
    assert small == again and small.low <= small.mean <= small.high and small.mean == pytest.approx(0.25)
    assert large.high - large.low < small.high - small.low
    assert paired_bootstrap([], [], 100, 0) is None
    assert paired_bootstrap([1], [0], 0, 0).low is None


def test_yes_ratio_and_per_sample_scores():
    from lmms_textdom.report.paired_sweep import is_yes_no, per_sample_score, yes_ratio

    assert yes_ratio(["Yes, there is a dog.", "no", "yes", "Maybe"]) == 0.5
    assert yes_ratio(["  \"YES\"", "nope"]) == 0.5 and yes_ratio([]) is None
    assert is_yes_no(["yes", "No.", " no "]) and not is_yes_no(["yes", "A"]) and not is_yes_no([])
    assert per_sample_score({"id": 3, "score": 1.0}) == 1.0 and per_sample_score(0) == 0.0 and per_sample_score(True) == 1.0
    assert per_sample_score([1, 0, None, 1]) == pytest.approx(2 / 3) and per_sample_score("n/a") is None
    assert per_sample_score(math.nan) is None


def test_a_grid_has_every_combination_and_a_greedy_baseline():
    """Token budgets sweep like any other model_arg; the baseline keeps the generation settings, decoded greedily."""
    from lmms_textdom.sweeps.sweep import greedy, grid_points, parse_vary, split_args

    varied = parse_vary(["max_frames=4,8", "attn_shift=1:1,1.2:0.9"])
    points = grid_points(varied, [("vcd_beta", "0.2")])
    assert [p.name for p in points] == ["max_frames=4, attn_shift=1:1", "max_frames=4, attn_shift=1.2:0.9", "max_frames=8, attn_shift=1:1", "max_frames=8, attn_shift=1.2:0.9"]
    assert points[1].model_args == "vcd_beta=0.2,max_frames=4,attn_shift=1.2:0.9" and points[1].folder == "max_frames=4__attn_shift=1.2-0.9"
    assert len({p.folder for p in points}) == 4
    assert split_args(greedy("max_new_tokens=16,temperature=0.7,do_sample=true,top_p=0.9")) == [
        ("max_new_tokens", "16"), ("do_sample", "false"), ("temperature", "0"),
    ]  # fmt: skip
    for bad, message in ((["x"], "--vary takes KEY=v1,v2"), (["a=1", "a=2"], "names a twice"), (["a=1,1"], "repeats a value")):
        with pytest.raises(UsageError, match=message):
            parse_vary(bad)


def test_the_switch_names_are_the_switch_model_args():
    """The sweep and the report know the switches by name (mitigations.settings, below models/); the adapters
    declare them (models/switch_args.py): one list must not drift from the other."""
    from lmms_textdom.mitigations.settings import SWITCH_ARGS
    from lmms_textdom.models.switch_args import SWITCH_MODEL_ARGS

    assert tuple(arg.name for arg in SWITCH_MODEL_ARGS) == SWITCH_ARGS
