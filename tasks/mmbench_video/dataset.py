"""MMBench-Video's questions and videos: ``MMBench-Video.tsv`` plus the mp4s unpacked from its pickles.

The hub repository ``opencompass/MMBench-Video`` is not a ``datasets`` dataset: it holds the TSV
(one question per row) and ``video_pkl/video_chunk_*.pkl``, each a pickled ``{video name: mp4
bytes}``. The videos are written out once as ``<video folder>/<name>.mp4`` and every doc carries
the absolute path of its video. The video folder is ``$LMMS_TEXTDOM_VIDEO_CACHE`` if set, else
``video/`` inside the dataset folder (the local snapshot, or huggingface_hub's cache snapshot),
the same place VLMEvalKit unpacks them, so a folder it prepared is used as it is. When every
video a question needs is already there, the pickles are not read (nor downloaded).
"""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path

from lmms_textdom.integration.data import snapshot_files
from lmms_textdom.core.errors import UsageError
from lmms_textdom.tasks.mmbench_video.scoring import dimensions_of

REPO = "opencompass/MMBench-Video"
TSV = "MMBench-Video.tsv"
CHUNKS = "video_pkl/video_chunk_*.pkl"
VIDEO_CACHE_ENV = "LMMS_TEXTDOM_VIDEO_CACHE"
COLUMNS = ("index", "video", "video_type", "question", "answer", "dimensions", "video_path")


def read_questions(tsv: Path) -> list[dict]:
    """The TSV's rows as dicts of strings (``index`` as int), checked for the columns the task uses."""
    import pandas as pd

    # keep_default_na=False: an answer such as "None" or "NA" must stay text
    table = pd.read_csv(tsv, sep="\t", dtype=str, keep_default_na=False)
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise UsageError(f"{tsv} lacks the column(s) {missing}; MMBench-Video's TSV has {', '.join(COLUMNS)}.")
    rows = [{c: row[c] for c in COLUMNS} for row in table.to_dict("records")]
    for row in rows:
        row["index"] = int(row["index"])
        try:
            dimensions_of(row["dimensions"])
        except (ValueError, SyntaxError) as exc:
            raise UsageError(f"{tsv}, question {row['index']}: {exc}") from exc
    return rows


def video_folder(dataset: Path) -> Path:
    return Path(os.environ.get(VIDEO_CACHE_ENV) or dataset / "video").expanduser()


def _chunk_number(path: Path) -> int:
    found = re.findall(r"\d+", path.stem)
    return int(found[-1]) if found else -1


def _write_atomically(path: Path, data: bytes) -> None:
    scratch = path.with_name(f".{path.name}.{os.getpid()}")
    scratch.write_bytes(data)
    os.replace(scratch, path)  # a crash never leaves a truncated mp4 that looks unpacked


def unpack_videos(chunks: list[Path], names: set[str], target: Path) -> None:
    """Write each video of ``names`` missing from ``target`` out of the pickle ``chunks``."""
    from filelock import FileLock

    try:
        target.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(target / ".unpack.lock"))
        lock.acquire()
    except OSError as exc:
        raise UsageError(f"cannot write the MMBench-Video videos to {target} ({exc}); set {VIDEO_CACHE_ENV} to a writable folder.") from exc
    try:  # several ranks start together: one unpacks, the others then find the files there
        missing = {n for n in names if not (target / f"{n}.mp4").exists()}
        for chunk in sorted(chunks, key=_chunk_number):
            if not missing:
                break
            with open(chunk, "rb") as handle:
                videos = pickle.load(handle)  # the benchmark's own format: a dict of mp4 bytes
            for name in missing & set(videos):
                _write_atomically(target / f"{name}.mp4", videos[name])
            missing -= set(videos)
            del videos
    finally:
        lock.release()
    if missing:
        shown = ", ".join(sorted(missing)[:5]) + (" ..." if len(missing) > 5 else "")
        raise UsageError(f"{len(missing)} video(s) of {TSV} are in none of the chunks {CHUNKS}: {shown}")


def load_rows() -> list[dict]:
    """All questions, each with ``video_path`` = the absolute path of its unpacked mp4."""
    dataset = snapshot_files(REPO, [TSV])
    rows = read_questions(dataset / TSV)
    target = video_folder(dataset)
    names = {row["video"] for row in rows}
    absent = [n for n in names if not (target / f"{n}.mp4").exists()]
    if absent:
        try:
            chunks = sorted(snapshot_files(REPO, [CHUNKS]).glob(CHUNKS))
        except UsageError as exc:
            raise UsageError(f"{len(absent)} of the {len(names)} videos are not unpacked in {target}, and {exc}") from exc
        unpack_videos(chunks, names, target)
    for row in rows:
        row["video_path"] = str((target / f"{row['video']}.mp4").resolve())
    return rows
