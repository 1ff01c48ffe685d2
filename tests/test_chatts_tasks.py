"""The time-series tasks without a model: parsing, ChatTS's scoring rules, data loading and its errors."""

from __future__ import annotations

import pytest

from lmms_textdom.core.errors import UsageError
from lmms_textdom.tasks.chatts_eval import scoring
from lmms_textdom.tasks.chatts_eval.scoring import score_item, sub_answers
from lmms_textdom.tasks.timeseries_reasoning.parsing import parse_choice

OPTIONS = ["upward trend", "downward trend", "no trend"]


@pytest.mark.parametrize(
    ("response", "expected"),
    [
        ("B", "B"), ("(C)", "C"), ("B) downward trend", "B"), ("A.", "A"),  # leading letter
        ("The answer is C.", "C"), ("Answer: (A)", "A"), ("I pick option b", "B"),  # stated letter
        ("I think c) no trend fits", "C"),  # the benchmark's option-text rule
        ("A downward trend", None),  # an article, not option A
        ("a) upward trend or b) downward trend", None),  # two options quoted: not guessed
        ("D", None),  # not an option
    ],
)  # fmt: skip
def test_choices_are_parsed_letter_first_then_by_option_text(response, expected):
    assert parse_choice(response, OPTIONS) == expected


def test_numbered_sub_answers_are_cut_as_upstream():
    assert sub_answers("1. increasing\n2. periodic\n3. noisy", 3) == ["increasing", "periodic", "noisy"]
    assert sub_answers("1. up 2. periodic 3. noisy", 3) == ["up ", "periodic ", "noisy"]  # one line: literal markers
    assert sub_answers("1. up", 2) == ["up", ""]
    assert sub_answers("no numbers at all", 1) == [""]


def test_trend_season_noise_rules():
    trend = {"type": "increase", "start": 3.0, "amplitude": 10.0}
    scores, _ = score_item("1. The trend is increasing, it starts at 3.3, the change value is 8 from left to right", [trend], ["trend"], ["v"])
    assert scores.categorical == [1.0]
    assert scores.numerical == pytest.approx([0.9, 0.8])
    steady = {"type": "keep steady", "start": 0.2, "amplitude": 0.0}
    scores, _ = score_item("1. Steady. start at 0.4", [steady], ["trend"], ["v"])
    assert scores.categorical == [0.0]  # upstream looks for "steady" case-sensitively
    assert scores.numerical == [1.0]  # |truth| < 0.5: any |prediction| < 0.5 counts
    season = {"type": "periodic fluctuation", "period": 8.0, "amplitude": 2.0}
    scores, _ = score_item("1. periodic, each period is 10 points, amplitude 2", [season], ["season"], ["v"])
    assert (scores.categorical, scores.numerical) == ([1.0], pytest.approx([0.75, 1.0]))
    noise = {"type": "noisy", "std": 0.5}
    scores, _ = score_item("1. no noise", [noise], ["noise"], ["v"])
    assert (scores.categorical, scores.numerical) == ([0.0], [0.0])


def test_local_events_match_within_64_points_only():
    feature = [{"type": ["upward spike"], "position": 100, "amplitude": 5.0}]
    near, _ = score_item("1. upward spike, position around point 110, amplitude 4", [feature], ["local"], ["v"])
    assert near.categorical == [1.0] and near.numerical == pytest.approx([0.9, 0.8])
    far, _ = score_item("1. upward spike, position around point 170, amplitude 5", [feature], ["local"], ["v"])
    assert far.categorical == [0.0] and far.numerical == [0.0, 0.0]


def test_ragas_reasons_are_counted_not_scored():
    local = [{"type": ["upward spike"], "position": 12, "amplitude": 5.0, "explain": "traffic"}]
    scores, _ = score_item("1. upward spike, position around point 12, amplitude 5. traffic", [local], ["local-inductive"], ["v"])
    assert (scores.categorical, scores.numerical, scores.reason, scores.unscored) == ([1.0], [1.0, 1.0], [], 1)
    scores, _ = score_item("1. Yes, both rise", [{"label": True, "explain": "x"}], ["shape-correlation-inductive"], ["a", "b"])
    assert (scores.categorical, scores.reason, scores.unscored) == ([1.0], [], 1)
    scores, _ = score_item("1. a restart", ["The service restarted."], ["deductive"], ["v"])
    assert (scores.reason, scores.unscored) == ([], 1)
    scores, _ = score_item("1. Yes. it is fine", ["Yes. In range."], ["deductive"], ["v"])
    assert (scores.reason, scores.unscored) == ([1.0], 0)


def test_clusters_causal_and_mcq_rules():
    scores, _ = score_item("1. cpu, disk. similar", [{"cols": ["cpu", "mem"], "explain": "x"}], ["shape-cluster-inductive"], ["cpu", "mem", "disk"])
    assert scores.categorical == [pytest.approx(0.5)]  # F1 with tp 1, fp 1, fn 1
    scores, _ = score_item("1. Memory-leak, clearly", ["Memory leak. It grows."], ["causal"], ["v"])
    assert scores.reason == [1.0]
    scores, _ = score_item("1. It is LATENCY.", ["latency"], ["MCQ2"], ["v"])
    assert scores.reason == [1.0]
    scores, unknown = score_item("1. x", ["y"], ["new-kind"], ["v"])
    assert unknown == ["new-kind"] and scores.unscored == 1


def test_zero_ground_truth_does_not_divide():
    assert scoring.closeness(0.0, 0.0) == 1.0 and scoring.closeness(0.1, 0.0) == 0.0


def test_chatts_eval_data_missing_names_the_variable_and_layout(monkeypatch, tmp_path):
    from lmms_textdom.tasks.chatts_eval.utils import _load

    monkeypatch.delenv("LMMS_TEXTDOM_DATA", raising=False)
    with pytest.raises(UsageError, match=r"not on the hub(.|\n)*10.5281/zenodo.14349206(.|\n)*LMMS_TEXTDOM_DATA/ChatTS/dataset_a.json"):
        _load()
    monkeypatch.setenv("LMMS_TEXTDOM_DATA", str(tmp_path))
    with pytest.raises(UsageError, match="holds neither dataset_a.json nor dataset_b.json"):
        _load()


def test_timeseries_exam_keeps_single_series_rows_and_names_the_layout(monkeypatch, tmp_path):
    from lmms_textdom.tasks.timeseries_reasoning.utils import _load, doc_to_target, doc_to_text
    from lmms_textdom.tiny.timeseries_data import write_timeseries_exam_snapshot

    monkeypatch.setenv("LMMS_TEXTDOM_DATA", str(tmp_path))
    with pytest.raises(UsageError, match="LMMS_TEXTDOM_DATA=.* is set, but .*AutonLab/TimeSeriesExam1 does not exist"):
        _load()
    write_timeseries_exam_snapshot(tmp_path, rows=8)
    docs = _load()
    assert len(docs) == 6 and all(not d["ts2"] for d in docs)  # rows 3 and 7 have a second series
    doc = docs[0]
    text = doc_to_text(doc)
    assert text.startswith(f"There is a time series of length {len(doc['ts1'])}: <ts><ts/>.\n")
    assert "\nA) The series trends upward\nB) The series trends downward\nAnswer with the option letter." in text
    assert doc_to_target(doc) == "A"


def test_two_local_snapshots_of_one_repository_do_not_share_a_cache(monkeypatch, tmp_path):
    """datasets names a local folder's prepared copy by folder name and configs only; each snapshot gets its own."""
    from lmms_textdom.integration.data import hub_dataset
    from lmms_textdom.tiny.timeseries_data import EXAM_REPO, write_timeseries_exam_snapshot

    for rows in (5, 8):
        write_timeseries_exam_snapshot(tmp_path / str(rows), rows=rows)
        monkeypatch.setenv("LMMS_TEXTDOM_DATA", str(tmp_path / str(rows)))
        assert len(hub_dataset(EXAM_REPO, None, "test")) == rows
