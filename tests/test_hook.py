"""The metric hook: payload round trip, wrapping another task's process_results, aggregations."""

from __future__ import annotations

import numpy as np
import pytest

from lmms_textdom.integration.hook import (
    METRIC_NAMES,
    encode_payload,
    group_mean,
    mean_of_defined,
    samples_measured,
    split_response,
    textdom_metrics,
    with_textdom,
)
from lmms_textdom.core.metrics import summarize
from lmms_textdom.core.stats import SampleStats

STATS = SampleStats(("text", "image"), (10, 30), np.array([[3.0, 1.0], [2.0, 2.0], [1.0, 3.0], [4.0, 0.0]]), np.zeros(4), 2, 4)


def test_payload_round_trip_gives_the_metric_values():
    texts, payload = split_response(["B", encode_payload(STATS, {"prune_ratio": 0.0})])
    assert texts == ["B"]
    values = textdom_metrics(payload)
    expected = summarize(STATS).values()
    assert {k: values[k] for k in METRIC_NAMES} == expected
    assert values["mdi_early"] == pytest.approx((5 / 10) / (3 / 30))
    assert values["textdom"]["settings"] == {"prune_ratio": 0.0}
    assert values["textdom"]["stats"]["counts"] == [10, 30]
    assert len(values["textdom"]["layers"]["mdi"]) == 4 and values["textdom"]["layers"]["mdi"][3] is None


def test_plain_text_results_have_no_payload():
    assert split_response(["B"]) == (["B"], None)
    assert textdom_metrics(None) == {}


def test_with_textdom_wraps_another_task():
    def accuracy_only(doc, results):
        assert results == ["B"], "the wrapped task must see the text alone"
        return {"acc": float(results[0] == doc["answer"])}

    wrapped = with_textdom(accuracy_only)
    out = wrapped({"answer": "B"}, ["B", encode_payload(STATS, {})])
    assert out["acc"] == 1.0 and set(METRIC_NAMES) <= set(out)
    assert wrapped({"answer": "B"}, ["B"]) == {"acc": 1.0}


def test_aggregations():
    assert mean_of_defined([1.0, None, 2.0]) == 1.5
    assert mean_of_defined([None]) is None
    detail = textdom_metrics(split_response(["x", encode_payload(STATS, {})])[1])["textdom"]
    assert samples_measured([detail, detail]) == 2
    assert group_mean([1.0, 3.0], [1, 3]) == pytest.approx(2.5)
    assert group_mean([1.0, None], [1, 3]) == 1.0
    assert group_mean([1.0, 3.0], [1, 3], weight_by_size=False) == 2.0
    assert group_mean([None], [1]) is None


def test_run_settings_leave_out_what_describes_one_sample(tmp_path):
    """Two runs that differ only in per-sample facts (kept tokens per item, frames) read as the same run."""
    import json

    from lmms_textdom.integration.hook import DETAIL
    from lmms_textdom.report.runs import read_sample_log

    run = {"prune_ratio": 0.5, "nontext_repeat": 1}
    logs = []
    for i, items in enumerate(([[30, 15]], [[30, 14]])):
        record = textdom_metrics(split_response([encode_payload(STATS, {**run, "nontext_items": items}, per_sample=["nontext_items"])])[1])
        assert record[DETAIL]["settings"]["nontext_items"] == items  # the sample keeps its own facts
        path = tmp_path / f"samples_{i}.jsonl"
        path.write_text(json.dumps({DETAIL: record[DETAIL]}) + "\n")
        logs.append(read_sample_log(path, 1, type("Quiet", (), {"update": lambda self, n: None})()))
    assert logs[0].settings == logs[1].settings == run
