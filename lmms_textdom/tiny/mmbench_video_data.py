"""Fabricated MMBench-Video questions and tiny synthetic clips, written as a local snapshot of the hub repository.

``write_mmbench_video_snapshot(root)`` creates ``root/opencompass/MMBench-Video/`` with
``MMBench-Video.tsv`` and ``video_pkl/video_chunk_{0,1}.pkl`` (pickled ``{video name: mp4 bytes}``),
the real file layout, so ``LMMS_TEXTDOM_DATA=root`` makes the task load it. Each clip is 16 frames
(by default) of 64x64 pixels, a square moving over a coloured background, H.264 mp4 made with PyAV.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np

REPO = "opencompass/MMBench-Video"
# (video, video_type, question, answer, dimensions): two questions share a video, one spans two
# coarse groups, and the videos are split over two chunks as in the real repository
QUESTIONS = [
    ("clip_a", "Sports", "How many squares move across the screen?", "One square.", ["Counting"]),
    ("clip_a", "Sports", "Why does the square stop at the right edge?", "Because it reaches the border.", ["Causal Reasoning", "Human Motion"]),
    ("clip_b", "Life", "What is the video about?", "A coloured square moving.", ["Video Topic"]),
    ("clip_c", "Science", "Is there a cat in the video?", "No, there is no cat.", ["Hallucination"]),
    ("clip_c", "Science", "What colour is the background at the end?", "None", ["Common Sense Reasoning"]),
]
CHUNKS = [["clip_a", "clip_b"], ["clip_c"]]
#: the smallest video: a single frame shown for one second (one frame at fps 1, one frame pair for Qwen)
SMALLEST = ("clip_one_frame", "Life", "What is shown?", "A coloured square.", ["Video Scene"])


def tiny_clip(seed: int, frames: int = 16, size: int = 64, fps: int = 8) -> bytes:
    """An mp4 (H.264, yuv420p) of ``frames`` frames of ``size`` x ``size`` pixels."""
    import av

    rng = np.random.default_rng(seed)
    background = rng.integers(0, 256, 3, dtype=np.uint8)
    square = 255 - background
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("h264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = size, size, "yuv420p"
        for i in range(frames):
            frame = np.empty((size, size, 3), dtype=np.uint8)
            frame[:] = background
            x = i * (size - 16) // max(frames - 1, 1)
            frame[24:40, x : x + 16] = square
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    return buffer.getvalue()


def question_rows(smallest_first: bool = False) -> list[dict]:
    questions = [SMALLEST, *QUESTIONS] if smallest_first else QUESTIONS
    return [
        {
            "index": i,
            "video": video,
            "video_type": video_type,
            "question": question,
            "answer": answer,
            "dimensions": str(dimensions),
            "video_path": f"./video/{video}.mp4",
        }
        for i, (video, video_type, question, answer, dimensions) in enumerate(questions)
    ]


def write_mmbench_video_snapshot(root: str | Path, frames: int = 16, smallest_first: bool = False) -> Path:
    """Write the snapshot under ``root/opencompass/MMBench-Video`` and return that folder.

    ``smallest_first`` puts a question on a one-frame clip (``SMALLEST``) before the others.
    """
    import pandas as pd

    folder = Path(root) / REPO
    (folder / "video_pkl").mkdir(parents=True, exist_ok=True)
    pd.DataFrame(question_rows(smallest_first)).to_csv(folder / "MMBench-Video.tsv", sep="\t", index=False)
    for number, names in enumerate(CHUNKS):
        clips = {name: tiny_clip(seed=sum(map(ord, name)), frames=frames) for name in names}
        if smallest_first and number == 0:
            clips[SMALLEST[0]] = tiny_clip(seed=1, frames=1, fps=1)
        with open(folder / "video_pkl" / f"video_chunk_{number}.pkl", "wb") as handle:
            pickle.dump(clips, handle)
    return folder
