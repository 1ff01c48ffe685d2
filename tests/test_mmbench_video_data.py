"""MMBench-Video's data: the fabricated snapshot in the real layout, and the loader that unpacks the videos once."""

from __future__ import annotations

import io
import os
import pickle
import shutil
import subprocess
import sys

import av
import pandas as pd
import pytest

from lmms_textdom.core.errors import UsageError
from lmms_textdom.integration.runner import offline_env
from lmms_textdom.tasks.mmbench_video.dataset import COLUMNS, REPO, load_rows
from lmms_textdom.tiny.mmbench_video_data import QUESTIONS, write_mmbench_video_snapshot


@pytest.fixture()
def snapshot(tmp_path, monkeypatch):
    """A fresh snapshot (the loader writes into it), selected through LMMS_TEXTDOM_DATA."""
    folder = write_mmbench_video_snapshot(tmp_path / "data")
    monkeypatch.setenv("LMMS_TEXTDOM_DATA", str(tmp_path / "data"))
    monkeypatch.delenv("LMMS_TEXTDOM_VIDEO_CACHE", raising=False)
    return folder


def chunk_contents(folder) -> dict[str, bytes]:
    videos = {}
    for chunk in sorted((folder / "video_pkl").glob("video_chunk_*.pkl")):
        videos.update(pickle.loads(chunk.read_bytes()))
    return videos


def test_snapshot_has_the_real_files_and_columns(snapshot):
    assert sorted(p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if p.is_file()) == [
        "MMBench-Video.tsv",
        "video_pkl/video_chunk_0.pkl",
        "video_pkl/video_chunk_1.pkl",
    ]
    table = pd.read_csv(snapshot / "MMBench-Video.tsv", sep="\t")
    assert tuple(table.columns) == COLUMNS
    assert table["video_path"].tolist() == [f"./video/{v}.mp4" for v in table["video"]]
    videos = chunk_contents(snapshot)
    assert sorted(videos) == ["clip_a", "clip_b", "clip_c"]
    with av.open(io.BytesIO(videos["clip_a"])) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 16 and frames[0].shape == (64, 64, 3)
    assert (frames[0] != frames[-1]).any(), "the square moves"


def test_loader_unpacks_the_videos_once_into_the_snapshot(snapshot):
    rows = load_rows()
    assert [(r["index"], r["video"], r["question"], r["answer"]) for r in rows] == [(i, q[0], q[2], q[3]) for i, q in enumerate(QUESTIONS)]
    assert rows[4]["answer"] == "None", "text that pandas would read as missing stays text"
    videos = chunk_contents(snapshot)
    for row in rows:
        path = snapshot / "video" / f"{row['video']}.mp4"
        assert row["video_path"] == str(path.resolve()) and os.path.isabs(row["video_path"])
        assert path.read_bytes() == videos[row["video"]]
    written = {p.name: p.stat().st_mtime_ns for p in (snapshot / "video").glob("*.mp4")}
    shutil.rmtree(snapshot / "video_pkl")  # the second load must not need the pickles
    assert load_rows() == rows
    assert {p.name: p.stat().st_mtime_ns for p in (snapshot / "video").glob("*.mp4")} == written


def test_video_cache_variable_moves_the_videos(snapshot, tmp_path, monkeypatch):
    monkeypatch.setenv("LMMS_TEXTDOM_VIDEO_CACHE", str(tmp_path / "videos"))
    rows = load_rows()
    assert {r["video_path"] for r in rows} == {str((tmp_path / "videos" / f"{v}.mp4").resolve()) for v in ("clip_a", "clip_b", "clip_c")}
    assert not (snapshot / "video").exists()


def test_unwritable_video_folder_names_the_variable(snapshot, tmp_path, monkeypatch):
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("LMMS_TEXTDOM_VIDEO_CACHE", str(tmp_path / "a-file" / "videos"))
    with pytest.raises(UsageError, match="set LMMS_TEXTDOM_VIDEO_CACHE to a writable folder"):
        load_rows()


def test_missing_folder_names_the_variable_and_the_layout(tmp_path, monkeypatch):
    monkeypatch.setenv("LMMS_TEXTDOM_DATA", str(tmp_path))
    with pytest.raises(UsageError) as caught:
        load_rows()
    message = str(caught.value)
    assert f"LMMS_TEXTDOM_DATA={tmp_path} is set" in message and f"{REPO} does not exist" in message
    assert f"huggingface-cli download {REPO} --repo-type dataset --local-dir $LMMS_TEXTDOM_DATA/{REPO}" in message


def test_videos_neither_unpacked_nor_pickled_are_reported(snapshot):
    shutil.rmtree(snapshot / "video_pkl")
    with pytest.raises(UsageError, match=r"3 of the 3 videos are not unpacked in .*video_pkl/video_chunk_\*\.pkl"):
        load_rows()


def test_video_missing_from_every_chunk_is_named(snapshot):
    (snapshot / "video_pkl" / "video_chunk_1.pkl").write_bytes(pickle.dumps({"other": b""}))
    with pytest.raises(UsageError, match="1 video.* in none of the chunks .*: clip_c"):
        load_rows()


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda t: t.assign(dimensions=t["dimensions"].str.replace("Counting", "Telepathy")), r"question 0: unknown MMBench-Video dimension\(s\) \['Telepathy'\]"),
        (lambda t: t.drop(columns=["answer"]), r"lacks the column\(s\) \['answer'\]"),
    ],
)
def test_unexpected_tsv_is_refused(snapshot, change, message):
    tsv = snapshot / "MMBench-Video.tsv"
    change(pd.read_csv(tsv, sep="\t")).to_csv(tsv, sep="\t", index=False)
    with pytest.raises(UsageError, match=message):
        load_rows()


def test_hub_unreachable_without_local_copy_names_the_variable(tmp_path):
    env = offline_env()  # HF_HUB_OFFLINE=1, with an empty hub cache
    env.pop("LMMS_TEXTDOM_DATA", None)
    env["HF_HOME"] = str(tmp_path / "hf")
    code = "from lmms_textdom.tasks.mmbench_video.dataset import load_rows; load_rows()"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert f"could not fetch MMBench-Video.tsv of {REPO} from the hub" in done.stderr
    assert "Set LMMS_TEXTDOM_DATA to a folder holding opencompass/MMBench-Video/" in done.stderr
