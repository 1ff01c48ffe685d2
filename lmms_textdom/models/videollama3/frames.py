"""Which frames VideoLLaMA3 sees of a video file, and at what time, decoded with PyAV.

The original (``Videollama3Qwen2Processor.load_video``) pipes the file through the ffmpeg command
line's ``fps`` filter with ``round=down`` and, when that yields more than ``max_frames`` frames,
keeps ``linspace(0, n - 1, max_frames)`` of them; frame k is announced as ``start + k / fps``
seconds (``start``: the video stream's start time). The ffmpeg command line first shifts every
timestamp so that the file starts at 0 (its default input offset, minus the file's start time);
the fps filter then puts each decoded frame in output slot ``floor(t * fps)`` (t its shifted
presentation time) and emits, for every slot up to the end of the stream, the last frame at or
before that slot. The same rule is applied here to the frames' presentation times, read with PyAV,
so no ffmpeg binary is needed and the chosen frame numbers are known (the tests compare it with
FFmpeg's own filter run through PyAV, on files that start at 0 and files that do not).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from lmms_textdom.core.errors import UsageError
from lmms_textdom.media.video import read_frames

#: DAMO's inference defaults (README, official eval: fps 1, at most 180 frames)
DEFAULT_FPS = 1.0
DEFAULT_MAX_FRAMES = 180


@dataclass(frozen=True)
class Clip:
    frames: list[Image.Image]
    indices: list[int]  # decoded frame numbers, in order
    timestamps: list[float]  # seconds announced to the model before each frame


@dataclass(frozen=True)
class FrameTimes:
    times: list[Fraction]  # presentation time of every frame, display order, from the file's start
    end: Fraction  # end of the last frame (its time plus its duration), from the file's start
    start: float  # the video stream's start time in seconds, as the file states it


def frame_times(path: str | Path) -> FrameTimes:
    """Presentation times of every frame, from the packets (no decoding); UsageError if unreadable."""
    import av

    if not Path(path).is_file():
        raise UsageError(f"video file {path} does not exist")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise UsageError(f"{path} has no video stream")
            stream = container.streams.video[0]
            base = stream.time_base
            packets = [(p.pts, p.duration) for p in container.demux(stream) if p.pts is not None and p.size]
            start = float(stream.start_time * base) if stream.start_time is not None else 0.0
            rate = stream.average_rate or stream.guessed_rate
            # ffmpeg's input offset: minus the file's start time, rounded to the stream's time base
            # (e.g. 0.583 s for an MPEG-4 file whose first frame is not at 0, B-frame delay or edit list)
            shift = round_half_up(Fraction(container.start_time, av.time_base) / base) if container.start_time else 0
    except av.error.FFmpegError as exc:
        raise UsageError(f"cannot read video {path}: {exc}") from None
    if not packets:
        raise UsageError(f"video {path} has no decodable frames")
    packets.sort()
    last_pts, last_duration = packets[-1]
    duration = last_duration * base if last_duration else (1 / Fraction(rate) if rate else Fraction(0))
    return FrameTimes([(pts - shift) * base for pts, _ in packets], (last_pts - shift) * base + duration, start)


def round_half_up(value: Fraction) -> int:
    """FFmpeg's ``av_rescale_q`` rounding of a positive value (to nearest, halves away from zero)."""
    return math.floor(value + Fraction(1, 2))


def fps_filter_indices(times: FrameTimes, fps: float) -> list[int]:
    """Frame numbers FFmpeg's ``fps=fps:round=down`` emits (one per output slot)."""
    rate = Fraction(fps).limit_denominator(1_000_000)
    slots = [math.floor(t * rate) for t in times.times]
    first, end = slots[0], math.floor(times.end * rate)
    chosen, frame = [], 0
    for slot in range(first, end):
        while frame + 1 < len(slots) and slots[frame + 1] <= slot:
            frame += 1
        chosen.append(frame)
    return chosen


def sample_clip(path: str | Path, fps: float = DEFAULT_FPS, max_frames: int = DEFAULT_MAX_FRAMES) -> Clip:
    times = frame_times(path)
    indices = fps_filter_indices(times, fps)
    if not indices:
        seconds = float(times.end - times.times[0])
        raise UsageError(
            f"video {path} lasts {seconds:.3f} s, shorter than one frame at fps={fps}: "
            f"raise fps to at least {1 / seconds:.3g} (model_arg fps)"
        )
    stamps = [times.start + k / fps for k in range(len(indices))]
    if len(indices) > max_frames:
        keep = np.linspace(0, len(indices) - 1, max_frames, dtype=int)
        indices, stamps = [indices[k] for k in keep], [stamps[k] for k in keep]
    return Clip(read_frames(path, indices), indices, stamps)
