"""mmbench_video_textdom: scoring against hand computation, and the task built by lmms-eval, judged by a loopback server."""

from __future__ import annotations

import json
from argparse import Namespace

import numpy as np
import pytest

from lmms_textdom.core.errors import UsageError
from lmms_textdom.integration.hook import METRIC_NAMES, encode_payload
from lmms_textdom.core.stats import SampleStats
from lmms_textdom.tasks.mmbench_video.scoring import (
    COARSE,
    COARSE_RATINGS,
    JUDGE_SYSTEM_PROMPT,
    L3,
    dimensions_of,
    judge_user_message,
    parse_score,
    ratings,
    vlmevalkit_skips,
)
from lmms_textdom.tasks.mmbench_video.utils import doc_to_text, load_docs
from tests.chat_server import Answer, ChatServer, user_message
from tests.lmms_runs import build_task

TASK = "mmbench_video_textdom"
# the fixture's questions (lmms_textdom.tiny.mmbench_video_data), a prediction for each and the
# judge's reply to it: the second reply is not a score, so that question fails (-1)
PREDICTIONS = ["One square.", "It is tired.", "A square moving around.", "There is a cat.", "White, I think."]
REPLIES = ["3", "The candidate is largely correct", "2", "0", "1"]
SCORES = [3, -1, 2, 0, 1]
DIMENSIONS = [["Counting"], ["Causal Reasoning", "Human Motion"], ["Video Topic"], ["Hallucination"], ["Common Sense Reasoning"]]

# written out by hand from SCORES and DIMENSIONS
COARSE_ALL = {"CP": 2.0, "FP-S": 1.5, "HL": 0.0, "CSR": 1.0, "TR": 0.0, "Perception": 5 / 4, "Reasoning": 0.5, "Overall": 6 / 5}
COARSE_VALID = {"CP": 2.0, "FP-S": 3.0, "HL": 0.0, "CSR": 1.0, "TR": None, "Perception": 5 / 3, "Reasoning": 1.0, "Overall": 6 / 4}
FINE_ALL = {"Counting": 3.0, "Causal Reasoning": 0.0, "Human Motion": 0.0, "Video Topic": 2.0, "Hallucination": 0.0, "Common Sense Reasoning": 1.0}
FINE_VALID = {**FINE_ALL, "Causal Reasoning": None, "Human Motion": None}
STATS = SampleStats(("text", "video"), (10, 30), np.array([[3.0, 1.0], [2.0, 2.0], [1.0, 3.0], [4.0, 0.0]]), np.zeros(4), 2, 4)


def with_unreached(values: dict, names) -> dict:
    return {name: values.get(name) for name in names}


def test_taxonomy_has_26_capabilities_in_9_groups():
    assert len(L3) == len(set(L3)) == 26 and len(COARSE) == 9
    assert set(COARSE_RATINGS["Overall"]) == set(L3)
    assert set(COARSE_RATINGS["Perception"]) | set(COARSE_RATINGS["Reasoning"]) == set(L3)
    assert not set(COARSE_RATINGS["Perception"]) & set(COARSE_RATINGS["Reasoning"])


@pytest.mark.parametrize(
    "reply,score",
    [("3", 3), (" 2\n", 2), ("0", 0), ("4", -1), ("-1", -1), ("2.5", -1), ("two", -1), ("Score: 2", -1), ("", -1), (None, -1)],
)
def test_only_a_lone_integer_0_to_3_is_a_score(reply, score):
    assert parse_score(reply) == score


@pytest.mark.parametrize("prediction", ["None", "N/A", "NA", "null", "nan", ""])
def test_predictions_pandas_reads_as_missing_are_flagged_but_still_judged(data, tmp_path, monkeypatch, prediction):
    # VLMEvalKit reads its prediction file with pandas: these cells become NaN and are never judged
    assert vlmevalkit_skips(prediction)
    with ChatServer(lambda body: Answer("3")) as server:
        monkeypatch.setenv("LMMS_TEXTDOM_JUDGE_BASE_URL", server.url)
        monkeypatch.setenv("LMMS_TEXTDOM_JUDGE_MODEL", "gpt-4-1106-preview")
        monkeypatch.setenv("LMMS_TEXTDOM_JUDGE_CACHE", str(tmp_path / "judge-cache"))
        task = build_task(TASK)
        out = task.process_results(task.test_docs()[4], [prediction])  # reference answer "None"
    assert out["mmbv_score"]["vlmevalkit_skips"] is True and out["mmbv_judge_model"] == "gpt-4-1106-preview"
    assert server.count == (1 if prediction else 0), "a non-empty prediction still goes to the judge"
    assert out["mmbv_score"]["judgement"] == (3 if prediction else -1)


def test_ordinary_predictions_are_not_flagged():
    assert not any(vlmevalkit_skips(p) for p in ["none", " None", "None.", "No", "0", "There is none."])


def test_judge_messages_are_the_benchmarks():
    assert judge_user_message("Q?", "A.", "P.") == "Question: Q?\nGroundtruth answer: A.\nCandidate answer: P.\nYour response: "
    assert JUDGE_SYSTEM_PROMPT.startswith("\nAs an AI assistant, your task is to evaluate a candidate answer")
    assert JUDGE_SYSTEM_PROMPT.endswith("Your response should be a single integer from 0, 1, 2, or 3.\n")


def test_ratings_equal_hand_computation():
    got = ratings(zip(DIMENSIONS, SCORES))
    assert got["coarse_all"] == pytest.approx(with_unreached(COARSE_ALL, COARSE_RATINGS))
    assert got["coarse_valid"] == pytest.approx(with_unreached(COARSE_VALID, COARSE_RATINGS))
    assert got["fine_all"] == pytest.approx(with_unreached(FINE_ALL, L3))
    assert got["fine_valid"] == pytest.approx(with_unreached(FINE_VALID, L3))


def test_dimensions_must_be_a_list_of_known_names():
    assert dimensions_of("['OCR', 'Counting']") == ["OCR", "Counting"]
    with pytest.raises(ValueError, match="unknown"):
        dimensions_of("['Telepathy']")
    with pytest.raises(ValueError, match="list of names"):
        dimensions_of("'OCR'")


def test_prompt_is_the_question_optionally_wrapped():
    doc = {"question": "What happens?"}
    assert doc_to_text(doc, {"pre_prompt": "", "post_prompt": ""}) == "What happens?"
    assert doc_to_text(doc, {"pre_prompt": "Question: ", "post_prompt": "\nAnswer: "}) == "Question: What happens?\nAnswer: "


@pytest.fixture()
def data(mmbv_data_root, monkeypatch):
    monkeypatch.setenv("LMMS_TEXTDOM_DATA", str(mmbv_data_root))
    monkeypatch.delenv("LMMS_TEXTDOM_VIDEO_CACHE", raising=False)
    for name in ("BASE_URL", "MODEL", "API_KEY", "CACHE"):
        monkeypatch.delenv(f"LMMS_TEXTDOM_JUDGE_{name}", raising=False)
    return mmbv_data_root


@pytest.fixture()
def judge_server(data, tmp_path, monkeypatch):
    """The loopback judge, configured through the environment, replying REPLIES by prediction."""
    reply_to = dict(zip(PREDICTIONS, REPLIES))
    with ChatServer(lambda body: Answer(text=reply_to[user_message(body).split("Candidate answer: ")[1].split("\n")[0]])) as server:
        monkeypatch.setenv("LMMS_TEXTDOM_JUDGE_BASE_URL", server.url)
        monkeypatch.setenv("LMMS_TEXTDOM_JUDGE_MODEL", "local-judge")
        monkeypatch.setenv("LMMS_TEXTDOM_JUDGE_CACHE", str(tmp_path / "judge-cache"))
        yield server


def aggregate(task, per_doc: list[dict], output_path=None) -> dict:
    """The per-sample values aggregated by lmms-eval's own code, as at the end of a run."""
    from lmms_eval.evaluator_utils import TaskOutput

    task.args = Namespace(output_path=output_path)  # what the evaluator sets
    output = TaskOutput.from_taskdict(TASK, task)
    for values in per_doc:
        for metric, value in values.items():
            output.sample_metrics[(metric, "none")].append(value)
    output.calculate_aggregate_metric(bootstrap_iters=100)
    output.calculate_clt_aggregate_metric()
    return {key.split(",")[0]: value for key, value in output.agg_metrics.items()}


def test_task_hands_the_model_the_video_path_and_the_question(data):
    task = build_task(TASK)
    docs = list(task.test_docs())
    assert [d["question"] for d in docs] == [
        "How many squares move across the screen?",
        "Why does the square stop at the right edge?",
        "What is the video about?",
        "Is there a cat in the video?",
        "What colour is the background at the end?",
    ]
    assert task.doc_to_visual(docs[2]) == [str((data / "opencompass/MMBench-Video/video/clip_b.mp4").resolve())]
    assert task.doc_to_text(docs[2]) == "What is the video about?"
    assert task.config.generation_kwargs["until"] == [] and task.config.generation_kwargs["do_sample"] is False
    assert {m["metric"] for m in task.config.metric_list} == {"mmbv_score", "mmbv_score_valid", "mmbv_judge_failed", "mmbv_judge_model", *METRIC_NAMES, "textdom", "textdom_failed"}


def test_judged_scores_and_ratings_equal_hand_computation(judge_server, tmp_path):
    task = build_task(TASK)
    docs = list(task.test_docs())
    per_doc = [task.process_results(doc, [prediction]) for doc, prediction in zip(docs, PREDICTIONS)]
    assert [d["mmbv_score"]["judgement"] for d in per_doc] == SCORES
    assert [d["mmbv_score"]["score"] for d in per_doc] == [3, 0, 2, 0, 1]
    assert ["score" in d["mmbv_score_valid"] for d in per_doc] == [True, False, True, True, True]
    assert judge_server.count == 5
    first = judge_server.requests[0]["body"]
    assert first["model"] == "local-judge"
    assert first["messages"] == [
        {"role": "system", "content": JUDGE_SYSTEM_PROMPT},
        {"role": "user", "content": judge_user_message(docs[0]["question"], "One square.", "One square.")},
    ]

    results = aggregate(task, per_doc, output_path=str(tmp_path / "out"))
    assert results["mmbv_score"] == pytest.approx(6 / 5)
    assert results["mmbv_score_valid"] == pytest.approx(6 / 4)
    assert results["mmbv_judge_failed"] == 1
    assert results["mmbv_judge_model"] == "local-judge" and results["mmbv_judge_model_stderr_clt"] == "N/A"
    assert results["mmbv_score_stderr_clt"] == pytest.approx(np.std([3, 0, 2, 0, 1], ddof=1) / np.sqrt(5))
    assert results["mmbv_score_valid_stderr_clt"] == pytest.approx(np.std([3, 2, 0, 1], ddof=1) / np.sqrt(4))
    assert isinstance(results["mmbv_score_stderr_clustered"], float), "questions are clustered by video"
    (written,) = (tmp_path / "out" / "submissions").glob("mmbench_video_textdom_ratings_*.json")
    table = json.loads(written.read_text())
    assert table["judge_model"] == "local-judge"
    assert table["coarse_valid"] == pytest.approx(with_unreached(COARSE_VALID, COARSE_RATINGS))
    assert table["fine_all"] == pytest.approx(with_unreached(FINE_ALL, L3))

    again = [task.process_results(doc, [prediction]) for doc, prediction in zip(docs, PREDICTIONS)]
    assert judge_server.count == 5, "the second pass is answered from the judge cache"
    assert [d["mmbv_score"]["judgement"] for d in again] == SCORES


def test_empty_answer_fails_without_asking_the_judge(judge_server):
    task = build_task(TASK)
    out = task.process_results(task.test_docs()[0], ["  "])
    assert out["mmbv_score"]["judgement"] == -1 and out["mmbv_judge_failed"] == 1
    assert judge_server.count == 0


def test_without_a_judge_scores_are_missing_textdom_is_measured_and_one_warning(data, logged_warnings):
    task = build_task(TASK)
    payload = encode_payload(STATS, {})
    per_doc = [task.process_results(doc, [prediction, payload]) for doc, prediction in zip(task.test_docs(), PREDICTIONS)]
    results = aggregate(task, per_doc)
    assert results["mmbv_score"] is None and results["mmbv_score_valid"] is None and results["mmbv_judge_failed"] is None
    assert results["mmbv_judge_model"] is None
    assert results["mmbv_score_stderr_clt"] == "N/A"
    assert results["mdi_early"] == pytest.approx((5 / 10) / (3 / 30)) and results["textdom"] == 5
    assert len([m for m in logged_warnings if "no judge configured" in m]) == 1
    assert "LMMS_TEXTDOM_JUDGE_BASE_URL" in next(m for m in logged_warnings if "no judge configured" in m)


def test_half_configured_judge_stops_the_task_before_generation(data, monkeypatch):
    # called directly: in-process, lmms-eval retries a failing process_docs for 8 s (the CLI exits at once)
    monkeypatch.setenv("LMMS_TEXTDOM_JUDGE_MODEL", "gpt-4-turbo")
    with pytest.raises(UsageError, match="LMMS_TEXTDOM_JUDGE_BASE_URL is not"):
        load_docs(None)
