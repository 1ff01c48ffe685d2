"""Through the real lmms-eval CLI: a run keeps its finished samples when one sample fails, and an
interrupted run resumes from lmms-eval's response cache (``--use_cache``).

The bad sample is real: in a copy of the fabricated MMMU-Pro data, one image file of one standard
question holds an HTML error page. lmms-eval decodes a doc's images only when the model asks for
them (and the first doc when it builds the task), so the run fails mid-way, in our adapter.
Runs use batch size 2: the bad sample's batch is retried one request at a time, and a resumed run
answers the rest in the same batches as an uninterrupted run.
"""

from __future__ import annotations

import re
import sqlite3

import pytest

from lmms_textdom.integration.hook import METRIC_NAMES
from tests.lmms_runs import results_of, run_cli, samples_of

TASK, STANDARD, VISION = "mmmu_pro_textdom", "mmmu_pro_standard_textdom", "mmmu_pro_vision_textdom"
BROKEN_DOC = 3  # not 0: lmms-eval decodes the first doc while it builds the task
BATCH_MATE = 0  # its batch (longest prompts first: [2, 5], [4, 1], [3, 0], ...) was retried one by one
FAST = ("--batch_size", "2", "--gen_kwargs", "max_new_tokens=8")
RUN_ID = "textdom-resume-test"


def break_image(root, doc_id: int) -> None:
    """Replace image_1 of standard question ``doc_id`` by an HTML error page (a failed download)."""
    from datasets import Dataset, Image

    path = root / "MMMU/MMMU_Pro/standard (10 options)/test-00000-of-00001.parquet"
    data = Dataset.from_parquet(str(path)).cast_column("image_1", Image(decode=False))
    columns = data.to_dict()
    columns["image_1"][doc_id] = {"bytes": b"<html><body>404 Not Found</body></html>", "path": None}
    Dataset.from_dict(columns, features=data.features).cast_column("image_1", Image()).to_parquet(str(path))


@pytest.fixture(scope="module")
def broken_data_root(tmp_path_factory):
    from lmms_textdom.tiny.mmmu_pro_data import write_mmmu_pro_snapshot

    root = tmp_path_factory.mktemp("broken")
    write_mmmu_pro_snapshot(root, rows_per_config=6)  # the same rows as mmmu_data_root
    break_image(root, BROKEN_DOC)
    return root


@pytest.fixture(scope="module")
def runs(tiny_llava_dir, mmmu_data_root, broken_data_root, tmp_path_factory):
    """The four runs: uninterrupted (clean data), record (broken data, cache), stop (broken data, cache
    under a fixed run id) and resumed (the stop run's command once the image is repaired)."""
    out = tmp_path_factory.mktemp("failure_runs")
    model_args = f"pretrained={tiny_llava_dir}"
    done = {"out": out}
    done["uninterrupted"] = run_cli("llava_hf_textdom", model_args, TASK, out / "uninterrupted", mmmu_data_root, *FAST)
    done["record"] = run_cli(
        "llava_hf_textdom", model_args, TASK, out / "record", broken_data_root, *FAST, "--use_cache", str(out / "record_cache")
    )
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LMMS_CACHE_RUN_ID", RUN_ID)
        for name, data in (("stop", broken_data_root), ("resumed", mmmu_data_root)):
            done[name] = run_cli(
                "llava_hf_textdom", f"{model_args},on_sample_error=stop", TASK, out / name, data, *FAST,
                "--use_cache", str(out / "stop_cache"),
            )  # fmt: skip
            done[f"{name}_cached"] = stored_answers(out / "stop_cache" / "runs" / RUN_ID / "rank_0.db")
    return done


def stored_answers(database) -> dict[tuple[str, int], str]:
    with sqlite3.connect(database) as db:
        rows = db.execute("SELECT task_name, doc_id, response FROM responses").fetchall()
    return {(task, doc_id): response for task, doc_id, response in rows if response != "null"}


def assert_same_samples(run, reference, skip=()):
    for task in (STANDARD, VISION):
        got, expected = samples_of(run, task, key=lambda row: row["doc_id"]), samples_of(reference, task, key=lambda row: row["doc_id"])
        assert got.keys() == expected.keys()
        for doc_id in set(got) - {d for t, d in skip if t == task}:
            assert got[doc_id]["filtered_resps"] == expected[doc_id]["filtered_resps"], (task, doc_id)
            for key in (*METRIC_NAMES, "mmmu_acc"):
                assert got[doc_id][key] == expected[doc_id][key], (task, doc_id, key)
            assert got[doc_id]["textdom"]["stats"] == expected[doc_id]["textdom"]["stats"], (task, doc_id)


def test_one_bad_sample_is_recorded_and_the_run_finishes(runs):
    done = runs["record"]
    assert done.returncode == 0, done.stderr[-3000:]
    results = results_of(runs["out"] / "record")["results"]
    assert (results[STANDARD]["textdom_failed,none"], results[STANDARD]["textdom,none"]) == (1, 5)
    assert (results[VISION]["textdom_failed,none"], results[VISION]["textdom,none"]) == (0, 6)
    assert (results[TASK]["textdom_failed,none"], results[TASK]["textdom,none"]) == (1, 11)
    # The summary names the sample; the error of each failure is in the log as it happens.
    summary = done.stderr[done.stderr.index("1 of 12 requests failed") :]
    assert f"{STANDARD} doc_id {BROKEN_DOC}: UnidentifiedImageError: cannot identify image file" in summary
    assert "a batch of 2 failed (UnidentifiedImageError" in done.stdout and "retrying its requests one at a time" in done.stdout


def test_the_failed_sample_is_logged_and_left_out_of_the_metrics(runs):
    logged = samples_of(runs["out"] / "record", STANDARD, key=lambda row: row["doc_id"])
    failed = logged[BROKEN_DOC]
    assert failed["filtered_resps"][0] == "" and failed["textdom_failed"] == 1
    assert failed["textdom"]["failure"]["error"] == "UnidentifiedImageError"
    assert (failed["textdom"]["failure"]["task"], failed["textdom"]["failure"]["doc_id"]) == (STANDARD, BROKEN_DOC)
    assert all(failed[key] is None for key in METRIC_NAMES)
    results = results_of(runs["out"] / "record")["results"][STANDARD]
    for key in METRIC_NAMES:
        measured = [row[key] for doc_id, row in logged.items() if doc_id != BROKEN_DOC]
        assert results[f"{key},none"] == pytest.approx(sum(measured) / 5, rel=1e-12), key
    # Every other sample is exactly what the run without the bad image gave (its batch mate ran alone).
    assert_same_samples(runs["out"] / "record", runs["out"] / "uninterrupted", skip={(STANDARD, BROKEN_DOC), (STANDARD, BATCH_MATE)})


def test_the_cache_keeps_the_answers_but_not_the_failure(runs):
    stored = stored_answers(runs["out"] / "record_cache" / "cache.db")
    assert len(stored) == 11 and (STANDARD, BROKEN_DOC) not in stored


def test_stop_ends_the_run_at_the_bad_sample_and_keeps_what_was_done(runs):
    done = runs["stop"]
    assert done.returncode == 2
    assert "lmms-textdom failure (SampleFailed)" in done.stderr
    assert f"{STANDARD} doc_id {BROKEN_DOC}: UnidentifiedImageError" in done.stderr
    assert not list((runs["out"] / "stop").glob("**/*_results.json"))
    # Answers finished before it (the longest prompts run first) are in the cache, under the run id.
    stored = runs["stop_cached"]
    assert 0 < len(stored) < 12 and (STANDARD, BROKEN_DOC) not in stored


def test_the_resumed_run_equals_an_uninterrupted_one(runs):
    done = runs["resumed"]
    assert done.returncode == 0, done.stderr[-3000:]
    hits = re.search(r"ResponseCache stats: (\d+) hits, (\d+) misses", done.stdout + done.stderr)
    assert hits is not None, done.stdout[-3000:]
    finished = len(runs["stop_cached"])
    assert finished > 0, "the stopped run kept nothing to resume from"
    assert (int(hits.group(1)), int(hits.group(2))) == (finished, 12 - finished), "the stopped run's answers come from the cache"
    assert len(runs["resumed_cached"]) == 12
    assert len(stored_answers(runs["out"] / "stop_cache" / "cache.db")) == 12  # merged once the run succeeded
    assert_same_samples(runs["out"] / "resumed", runs["out"] / "uninterrupted")
    resumed, uninterrupted = results_of(runs["out"] / "resumed")["results"], results_of(runs["out"] / "uninterrupted")["results"]
    for task in (TASK, STANDARD, VISION):
        for key in (*METRIC_NAMES, "mmmu_acc", "textdom", "textdom_failed"):
            assert resumed[task][f"{key},none"] == uninterrupted[task][f"{key},none"], (task, key)


def test_the_report_reads_a_run_with_a_failed_sample(runs, tmp_path):
    from tests.test_report import read_csv, report, row_of

    status, _, stderr = report(runs["out"] / "record", "--out", tmp_path, "--resamples", "0", "--no-figures")
    assert status == 0, stderr
    results = results_of(runs["out"] / "record")["results"][STANDARD]
    row = row_of(read_csv(tmp_path / "leaderboard.csv"), STANDARD)
    assert row["source"] == "sample log" and (int(row["samples"]), int(row["measured"])) == (6, 5)  # the failed one is not measured
    assert row["accuracy_metric"] == "mmmu_acc"
    for key in METRIC_NAMES:
        assert float(row[key]) == pytest.approx(results[f"{key},none"], rel=1e-12), key
