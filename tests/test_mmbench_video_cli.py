"""qwen2_5_vl_textdom on mmbench_video_textdom through the real lmms-eval CLI: video, pruning,
replication, and the 0-3 judge as a real OpenAI-compatible server on loopback."""

from __future__ import annotations

import pytest
import torch

from lmms_textdom.integration.hook import METRIC_NAMES
from lmms_textdom.media.video import video_info
from lmms_textdom.editing.pruning import kept_count
from tests.lmms_runs import judged_runs as judged, results_of, run_cli, samples_of

TASK = "mmbench_video_textdom"


def by_index(row: dict) -> int:
    return row["doc_id"]


@pytest.fixture(scope="module")
def judged_runs(tiny_qwen_dir, mmbv_data_root, tmp_path_factory):
    """One plain run and one pruned + replicated run, both judged by a loopback server that answers 2."""
    return judged(
        "qwen2_5_vl_textdom", tiny_qwen_dir, TASK, tmp_path_factory.mktemp("mmbv_runs"), mmbv_data_root, "2"
    )  # fmt: skip


def test_video_questions_are_scored_by_the_judge_with_textdom_metrics(judged_runs):
    for name in ("plain", "edited"):
        cells = results_of(judged_runs[name])["results"][TASK]
        questions = len(samples_of(judged_runs[name], TASK, key=by_index))
        assert cells["mmbv_score,none"] == 2.0 and cells["mmbv_judge_failed,none"] == 0
        assert cells["textdom,none"] == questions
        assert all(isinstance(cells[f"{m},none"], float) and cells[f"{m},none"] > 0 for m in METRIC_NAMES)
    # one request per distinct (question, answer) judged; repeats come from the on-disk cache
    judged = {
        (doc_id, row["filtered_resps"][0].strip())
        for name in ("plain", "edited")
        for doc_id, row in samples_of(judged_runs[name], TASK, key=by_index).items()
        if row["filtered_resps"][0].strip()
    }
    assert judged_runs["judge_requests"] == len(judged) > 0


def test_frames_follow_qwen_vl_utils_and_the_question_precedes_the_video(judged_runs, mmbv_data_root):
    """VLMEvalKit's MMBench_Video_8frame for a video model: qwen-vl-utils with nframes=8."""
    folder = mmbv_data_root / "opencompass/MMBench-Video/video"
    rows = samples_of(judged_runs["plain"], TASK, key=by_index)
    for row in rows.values():
        settings = row["textdom"]["settings"]
        info = video_info(folder / f"{row['mmbv_score']['video']}.mp4")
        expected = torch.linspace(0, info.num_frames - 1, 8).round().long().tolist()  # qwen-vl-utils' own expression
        assert settings["video_frames"] == [expected] and expected[0] == 0 and expected[-1] == info.num_frames - 1
        assert settings["content_order"] == ["text", "video"]
        # the record says what ran (8 frames, VLMEvalKit's MMBench_Video_8frame), not the arguments as given
        assert (settings["frame_sampling"], settings["video_order"]) == ("qwen_vl_utils", "text_first")
        assert (settings["max_frames"], settings["fps"], settings["video_sampling"]) == (8, None, "8frame")
        assert settings["video_fps"] == [pytest.approx(8 / info.duration)]  # qwen-vl-utils' sample_fps
    assert results_of(judged_runs["plain"])["results"][TASK]["mmbv_judge_model,none"] == "judge-under-test"


def test_video_tokens_are_pruned_then_replicated(judged_runs):
    plain = samples_of(judged_runs["plain"], TASK, key=by_index)
    edited = samples_of(judged_runs["edited"], TASK, key=by_index)
    for doc_id, row in edited.items():
        stats, base = row["textdom"]["stats"], plain[doc_id]["textdom"]["stats"]
        assert "video" in stats["classes"]
        video = stats["classes"].index("video")
        settings = row["textdom"]["settings"]
        assert (settings["prune_method"], settings["prune_ratio"], settings["nontext_repeat"]) == ("received", 0.5, 2)
        assert settings["nontext_original"] == base["counts"][video] == sum(base["counts"][1:])
        assert settings["nontext_kept"] == kept_count(base["counts"][video], 0.5)
        assert stats["counts"][video] == 2 * settings["nontext_kept"]
        assert stats["counts"][0] == base["counts"][0], "text is unchanged"


def test_without_a_judge_the_score_is_missing_and_textdom_still_measured(tiny_qwen_dir, mmbv_data_root, tmp_path, monkeypatch):
    for name in ("LMMS_TEXTDOM_JUDGE_BASE_URL", "LMMS_TEXTDOM_JUDGE_MODEL"):
        monkeypatch.delenv(name, raising=False)
    done = run_cli("qwen2_5_vl_textdom", f"pretrained={tiny_qwen_dir}", TASK, tmp_path, mmbv_data_root)
    assert done.returncode == 0, done.stderr[-3000:]
    cells = results_of(tmp_path)["results"][TASK]
    assert cells["mmbv_score,none"] is None
    assert all(isinstance(cells[f"{m},none"], float) for m in METRIC_NAMES)
    log = done.stdout + done.stderr
    assert log.count("MMBench-Video: no judge configured") == 1, "one warning per run, not per sample"
