"""Thinking segments through the real CLI: a plain lmms-eval run of the tiny Qwen-style thinking release,
its answers replaced by thinking answers in the sample log, ``lmms-textdom measure`` on that log, then
``lmms-textdom report --columns segments`` with the thinking-length and thinking-position figures."""

from __future__ import annotations

import contextlib
import io
import json
import shutil

import numpy as np
import pytest
from transformers import AutoTokenizer

from lmms_textdom.cli import main
from lmms_textdom.core.segments import segment_values
from lmms_textdom.core.stats import SampleStats
from lmms_textdom.integration.data import ENV
from lmms_textdom.integration.sample_logs import OUTPUT_IDS
from tests.lmms_runs import run_cli_ok
from tests.test_report import assert_drawn, read_csv, report

TASK = "mmmu_pro_standard_textdom"
MODEL = "qwen2_5_vl_textdom"
#: the logged answers, by doc_id: the template opened the thinking, so each starts inside it
ANSWERS = {
    0: "the cat sat\n</think>\n\nthe answer is a",
    1: "the cat sat on the mat and looked at the picture\n</think>\n\nanswer : b",
    2: "the question is about a chart , a table , a diagram or a photo . the first , the second or the third\n</think>\n\nanswer : c",
    3: "which option is correct ? the first , the second",  # never closed: truncated
    4: "<think>what is shown in the image ?</think>d",  # the model opened it again itself
    5: "the cat\n</think>\n\na",
}


@pytest.fixture(scope="module")
def measured(tiny_qwen_thinking_dir, mmmu_data_root, tmp_path_factory):
    """(measured output folder, measured rows by doc_id): a plain run, its log rewritten, measured."""
    root = tmp_path_factory.mktemp("thinking")
    run_cli_ok(MODEL, f"pretrained={tiny_qwen_thinking_dir},textdom=false", TASK, root / "plain", mmmu_data_root)
    logged = root / "logged"
    shutil.copytree(root / "plain", logged)
    (log,) = logged.glob(f"**/*_samples_{TASK}.jsonl")
    rows = [json.loads(line) for line in log.read_text().splitlines()]
    assert sorted(r["doc_id"] for r in rows) == sorted(ANSWERS)
    for row in rows:  # the text only (no logged ids): measure re-tokenizes it
        for key in ("resps", "filtered_resps"):  # lmms-eval logs each as the text (resps where it differs)
            if key in row:
                assert isinstance(row[key], str)
                row[key] = ANSWERS[row["doc_id"]]
        for counts in row["token_counts"] if isinstance(row["token_counts"], list) else [row["token_counts"]]:
            counts.pop(OUTPUT_IDS)
    log.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = root / "measured"
    err = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        mp.setenv(ENV, str(mmmu_data_root))
        try:
            main(["measure", str(logged), "--model", MODEL, "--model_args", f"pretrained={tiny_qwen_thinking_dir}", "--output_path", str(out)])
        except SystemExit as exc:
            assert exc.code in (0, None), err.getvalue()[-3000:]
    (path,) = out.glob(f"**/*_samples_{TASK}.jsonl")
    return out, {r["doc_id"]: r for r in map(json.loads, path.read_text().splitlines())}


def expected_split(tokenizer, text: str) -> tuple[tuple[int, int], tuple[int, int] | None]:
    """The rows by the documented rule, from the token ids (measure appends EOS to a text-only answer)."""
    ids = tokenizer.encode(text, add_special_tokens=False) + [tokenizer.eos_token_id]
    opening, closing = tokenizer.convert_tokens_to_ids("<think>"), tokenizer.convert_tokens_to_ids("</think>")
    start = ids.index(opening) + 1 if opening in ids else 0
    if closing not in ids:
        return (start, len(ids)), None
    return (start, ids.index(closing)), (ids.index(closing) + 1, len(ids))


def test_measured_thinking_answers_carry_their_segments(measured, tiny_qwen_thinking_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_qwen_thinking_dir)
    _, rows = measured
    for doc_id, row in rows.items():
        detail = row["textdom"]
        assert detail["settings"]["answer_tokens"] == "retokenized"
        stats = SampleStats.from_dict(detail["stats"])
        thinking, answer = expected_split(tokenizer, ANSWERS[doc_id])
        assert (stats.segments.where.thinking, stats.segments.where.answer) == (thinking, answer), doc_id
        assert detail["segments"]["truncated"] is (answer is None)
        assert detail["segments"]["markers"] == ["<think>", "</think>"]
        assert detail["segments"]["rows_thinking"] == thinking[1] - thinking[0]
        # masses of the parts: the whole answer's rows, less the markers' own
        marker_rows = stats.rows - stats.segments.thinking.rows - (stats.segments.answer.rows if answer else 0)
        assert marker_rows == (1 if answer else 0) + (1 if "<think>" in ANSWERS[doc_id] else 0)
        assert np.all(stats.segments.thinking.mass <= stats.mass * (1 + 1e-6))  # a part of the whole (7 digits kept)
    assert rows[3]["textdom"]["segments"]["truncated"] and rows[3]["textdom"]["segments"]["mdi_early_answer"] is None


@pytest.fixture(scope="module")
def segments_report(measured, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    status, stdout, stderr = report(measured[0], "--out", out, "--columns", "segments", "--resamples", "200")
    assert status == 0, stderr
    return out, stdout, read_csv(out / "leaderboard.csv")


def test_report_shows_the_segment_columns(measured, segments_report):
    out, stdout, (row,) = segments_report
    for header in ("early MDI thinking", "late MDI answer", "thinking rows", "truncated"):
        assert header in stdout
    samples = [SampleStats.from_dict(r["textdom"]["stats"]) for r in measured[1].values()]
    values = [segment_values(s) for s in samples]
    for key in ("mdi_late_thinking", "mdi_middle_answer", "rows_thinking", "truncated"):
        defined = [float(v[key]) for v in values if v[key] is not None]
        assert float(row[key]) == pytest.approx(np.mean(defined), rel=1e-9), key
        assert int(row[f"{key}_n"]) == len(defined)
        assert float(row[f"{key}_low"]) <= float(row[key]) <= float(row[f"{key}_high"])
    assert int(row["mdi_late_answer_n"]) == 5 and float(row["truncated"]) == pytest.approx(1 / 6)


def test_report_draws_the_answer_mdi_against_the_thinking_length_and_the_chain(segments_report):
    figures = segments_report[0] / "figures"
    assert_drawn(figures, "thinking_length", "thinking length", "answer MDI, late layers", "slope", "tiny-qwen2.5-vl-thinking")
    assert_drawn(figures, "thinking_position", "relative position in the thinking", "MDI, late layers")
