"""Every family: measuring a plain run's logged answer ids gives the record of the textdom run, at batch 1
and in a left-padded batch, with and without non-text edits (inputs_embeds, Qwen2.5-VL's 3-D positions)."""

from __future__ import annotations

import json

import pytest

from lmms_textdom.core.stats import SampleStats
from lmms_textdom.models.base import Request
from tests.test_forced_probe import assert_same_record
from tests.test_text_parts import ADAPTERS, checkpoints, family_requests  # noqa: F401 (fixture)

NEW_TOKENS = 6
#: non-text edits each family supports: the measure route runs on the edited inputs_embeds (and positions)
EDITS = {
    "llava": {"prune_ratio": 0.5, "nontext_repeat": 2},
    "qwen2_5_vl": {"prune_ratio": 0.5, "nontext_repeat": 2},
    "chatts": {"nontext_repeat": 2},
    "graphgpt": {"nontext_repeat": 2},
    "qwen2_audio": {"nontext_repeat": 2},
}


def stats_of(payload: str) -> SampleStats:
    return SampleStats.from_dict(json.loads(payload)["stats"])


def generated_and_plain(adapter, requests):
    """The textdom run's payloads and the plain run's logged ids (same adapter, greedy: same answers)."""
    generated = adapter._run_batch(requests)
    adapter.args["textdom"] = False
    try:
        plain = adapter._run_batch(requests)
    finally:
        adapter.args["textdom"] = True
    assert [r.text for r in plain] == [text for text, _ in generated]
    return [payload for _, payload in generated], [r.token_counts.output_ids for r in plain]


CASES = [(family, {}) for family in ADAPTERS] + [(family, edits) for family, edits in EDITS.items()]


@pytest.mark.parametrize("family,edits", CASES, ids=[f"{f}{'-edited' if e else ''}" for f, e in CASES])
def test_measured_record_equals_the_generated_one(family, edits, checkpoints, tiny_videos):  # noqa: F811
    adapter = ADAPTERS[family](pretrained=str(checkpoints(family)), device="cpu", batch_size=2, **edits)
    requests = [Request(r.context, r.visuals, r.doc, {"max_new_tokens": NEW_TOKENS}) for r in family_requests(family, tiny_videos)]
    payloads, answers = generated_and_plain(adapter, requests)
    record = {"tokens": 0}
    batched = adapter.measure_batch(requests, answers, {"answer_tokens": "logged_ids"}, [record] * len(requests))
    for i, request in enumerate(requests):
        (single,) = adapter.measure_batch([request], [answers[i]], {}, [record])
        expected = stats_of(payloads[i])
        assert expected.rows == len(answers[i])
        assert_same_record(stats_of(batched[i]), expected)
        assert_same_record(stats_of(single), expected)
        settings = json.loads(batched[i])["settings"]
        assert settings["probe_path"] == "teacher_forced" and settings["answer_tokens"] == "logged_ids"
        assert {k: v for k, v in settings.items() if k not in ("probe_path", "answer_tokens")} == {
            k: v for k, v in json.loads(payloads[i])["settings"].items() if k != "probe_path"
        }, "the run and sample settings must be those of the generate run"
