"""videollama3_textdom through the real lmms-eval CLI on a tiny DAMO-layout checkpoint: MMBench-Video with
the 0-3 judge on loopback (plain, and pruned + replicated), and MMMU-Pro's images."""

from __future__ import annotations

import pytest

from lmms_textdom.integration.hook import METRIC_NAMES
from tests.lmms_runs import judged_runs as judged, results_of, run_cli_ok, samples_of

TASK = "mmbench_video_textdom"
MODEL = "videollama3_textdom"
#: bound the tiny random model's answers to keep the runs short, and keep it from ending its turn at once
#: (an empty answer, which VLMEvalKit does not judge)
SHORT = ("--gen_kwargs", "max_new_tokens=24,min_new_tokens=4")


def by_index(row: dict) -> int:
    return row["doc_id"]


@pytest.fixture(scope="module")
def damo_dir(tmp_path_factory):
    from lmms_textdom.tiny.videollama3 import save_videollama3

    return save_videollama3(tmp_path_factory.mktemp("ckpt") / "tiny-videollama3-damo", layout="damo")


@pytest.fixture(scope="module")
def judged_runs(damo_dir, mmbv_data_root, tmp_path_factory):
    """One plain run and one pruned + replicated run, judged by a loopback server that answers 3."""
    return judged(
        MODEL, damo_dir, TASK, tmp_path_factory.mktemp("vl3_runs"), mmbv_data_root, "3", *SHORT
    )  # fmt: skip


def test_mmbench_video_prints_the_judge_score_and_the_six_metrics(judged_runs):
    for name in ("plain", "edited"):
        cells = results_of(judged_runs[name])["results"][TASK]
        questions = len(samples_of(judged_runs[name], TASK, key=by_index))
        assert cells["mmbv_score,none"] == 3.0 and cells["mmbv_judge_failed,none"] == 0
        assert cells["textdom,none"] == questions == 5
        assert all(isinstance(cells[f"{m},none"], float) and cells[f"{m},none"] > 0 for m in METRIC_NAMES)
        assert all(m in judged_runs[f"{name}_log"] for m in METRIC_NAMES), "the table lists every metric"


def test_video_class_counts_are_the_compressed_tokens_then_pruned_per_frame_and_repeated(judged_runs):
    plain = samples_of(judged_runs["plain"], TASK, key=by_index)
    edited = samples_of(judged_runs["edited"], TASK, key=by_index)
    for doc_id, row in plain.items():
        stats, settings = row["textdom"]["stats"], row["textdom"]["settings"]
        video = stats["classes"].index("video")
        (frames,), (kept,) = settings["video_frames"], settings["video_tokens"]
        assert settings["fps"] == 1.0 and settings["max_frames"] == 180 and settings["token_compression"] is True
        # VLMEvalKit's message: its system turn, then [question, video]
        assert settings["video_order"] == "text_first" and settings["content_order"] == ["text", "video"]
        assert settings["system_prompt"] == "You are a helpful assistant." and settings["faithful_resize_bug"] is False
        assert len(frames) == len(settings["video_timestamps"][0]) == 2  # 16 frames at 8 fps: 2 s
        assert stats["counts"][video] == kept <= settings["video_tokens_uncompressed"][0]
        other = edited[doc_id]["textdom"]
        assert (other["settings"]["prune_method"], other["settings"]["prune_ratio"], other["settings"]["nontext_repeat"]) == ("received", 0.5, 2)
        assert other["settings"]["nontext_original"] == kept
        assert kept // 2 <= other["settings"]["nontext_kept"] <= kept  # per frame: half, rounded half up
        assert other["stats"]["counts"][video] == 2 * other["settings"]["nontext_kept"]
        assert other["stats"]["counts"][0] == stats["counts"][0], "text is unchanged"


def test_mmmu_pro_images_run_unchanged(damo_dir, mmmu_data_root, tmp_path):
    run_cli_ok(MODEL, f"pretrained={damo_dir},prune_ratio=0.5", "mmmu_pro_standard_textdom", tmp_path, mmmu_data_root, "--limit", "2", *SHORT)
    cells = results_of(tmp_path)["results"]["mmmu_pro_standard_textdom"]
    assert cells["textdom,none"] == 2
    rows = samples_of(tmp_path, "mmmu_pro_standard_textdom")
    for row in rows.values():
        stats, settings = row["textdom"]["stats"], row["textdom"]["settings"]
        image = stats["classes"].index("image")
        # every image at merge 1 keeps half its tokens, rounded half up per image
        assert settings["nontext_original"] / 2 <= stats["counts"][image] == settings["nontext_kept"] < settings["nontext_original"]
        assert "video_frames" not in settings and settings["prune_method"] == "received"
