"""Video frames for video-language models: which frames to take, and decoding them (PyAV).

Sampling follows VLMEvalKit, which MMBench-Video and most video leaderboards are scored with:

- ``N`` frames (default 8): ``step = n / (N + 1)``, frames ``int(i * step)`` for i = 1..N, so the
  first and last frames are never taken;
- ``fps = f``: frames ``int(i * video_fps / f)`` for ``i < int(duration * f)``, duration =
  n / video_fps. When that is more than the frame cap, the cap's ``N`` frames are taken with the
  rule above instead, so a long video is still covered end to end rather than cut short.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PIL import Image

DEFAULT_FRAMES = 8


@dataclass(frozen=True)
class VideoInfo:
    num_frames: int
    fps: float  # the stream's average frame rate

    @property
    def duration(self) -> float:
        return self.num_frames / self.fps


@dataclass(frozen=True)
class SampledVideo:
    frames: list[Image.Image]
    indices: list[int]
    sampled_fps: float  # frames taken per second of video, for the model's time positions


def uniform_indices(num_frames: int, count: int) -> list[int]:
    """``count`` frames evenly inside the video, endpoints excluded (VLMEvalKit's ``nframe``)."""
    step = num_frames / (count + 1)
    return [int(i * step) for i in range(1, count + 1)]


def fps_indices(num_frames: int, video_fps: float, fps: float) -> list[int]:
    """One frame every ``1 / fps`` seconds from the start (VLMEvalKit's ``fps``); at least one."""
    wanted = max(1, int(num_frames / video_fps * fps))
    return [min(int(i * video_fps / fps), num_frames - 1) for i in range(wanted)]


def frame_indices(info: VideoInfo, max_frames: int = DEFAULT_FRAMES, fps: float | None = None) -> list[int]:
    if max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    if fps is not None:
        indices = fps_indices(info.num_frames, info.fps, fps)
        if len(indices) <= max_frames:
            return indices
    return uniform_indices(info.num_frames, max_frames)


def _open(path: str | Path):
    import av

    if not Path(path).is_file():
        raise FileNotFoundError(f"video file {path} does not exist")
    return av.open(str(path))


def video_info(path: str | Path) -> VideoInfo:
    """Frame count and rate from the container; frames are counted by demuxing if it does not say."""
    with _open(path) as container:
        stream = container.streams.video[0]
        rate = float(stream.average_rate or stream.guessed_rate or 0)
        count = stream.frames or sum(1 for packet in container.demux(stream) if packet.size)
    if count < 1 or rate <= 0:
        raise ValueError(f"{path}: cannot read a frame count and frame rate (frames {count}, rate {rate})")
    return VideoInfo(count, rate)


def read_frames(path: str | Path, indices: list[int]) -> list[Image.Image]:
    """The frames at ``indices`` (decoding order, repeats allowed), as RGB images."""
    wanted = sorted(set(indices))
    found: dict[int, Image.Image] = {}
    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for number, frame in enumerate(container.decode(stream)):
            if number in wanted:
                found[number] = frame.to_image().convert("RGB")
            if number >= wanted[-1]:
                break
    missing = [i for i in wanted if i not in found]
    if missing:
        raise ValueError(f"{path}: frames {missing[:5]} are past the last decodable frame")
    return [found[i] for i in indices]


def sample_video(path: str | Path, max_frames: int = DEFAULT_FRAMES, fps: float | None = None) -> SampledVideo:
    info = video_info(path)
    indices = frame_indices(info, max_frames, fps)
    frames = read_frames(path, indices)
    return SampledVideo(frames, indices, len(indices) / info.duration)
