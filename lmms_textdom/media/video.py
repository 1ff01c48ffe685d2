"""Video frames for video-language models: which frames to take, and decoding them (PyAV).

Two rules, named by ``rule``:

``vlmevalkit_images`` (the default of the functions here): VLMEvalKit's frames-as-images route
(``VideoBaseDataset.save_video_frames``), the frames it cuts for models that take images.

- ``N`` frames (default 8): ``step = n / (N + 1)``, frames ``int(i * step)`` for i = 1..N, so the
  first and last frames are never taken;
- ``fps = f``: ``step = video_fps / f``, frames ``int(i * step)`` for ``i < int(n / video_fps * f)``
  (the step is rounded to a float first, as VLMEvalKit does: ``int(i * video_fps / f)`` differs by
  one frame for some rates). When that is more than the frame cap, the cap's ``N`` frames are
  taken with the rule above instead, so a long video is still covered end to end.

``qwen_vl_utils``: the sampler of qwen-vl-utils (``smart_nframes`` + ``torch.linspace``), which
VLMEvalKit's video-model route leaves Qwen2-VL / Qwen2.5-VL to apply to the mp4 itself.

- a video of one frame: that frame twice (qwen-vl-utils refuses it; Qwen's processor repeats a
  lone frame to fill its temporal patch of 2 anyway);
- a frame count: ``N`` rounded to an even number (``FRAME_FACTOR`` 2, Python's round), frames
  ``linspace(0, n - 1, N)`` in float32, rounded half to even: both ends taken. A video shorter
  than ``N`` frames gets ``n // 2 * 2`` (VLMEvalKit's guard before it calls qwen-vl-utils);
- ``fps = f``: ``N = n / video_fps * f`` clamped to [4, cap] (``FPS_MIN_FRAMES`` 4; cap =
  ``max_frames`` or ``min(FPS_MAX_FRAMES = 768, n)``, each rounded to even) and to n, then
  floored to even; the same linspace.

qwen-vl-utils itself is not imported: its ``vision_process`` imports torchvision at module level,
which cannot import beside CPU torch (docs/setup.md); VLMEvalKit's image rule is in no package.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

DEFAULT_FRAMES = 8
VLMEVALKIT_IMAGES, QWEN_VL_UTILS = "vlmevalkit_images", "qwen_vl_utils"
RULES = (VLMEVALKIT_IMAGES, QWEN_VL_UTILS)
#: qwen-vl-utils' video constants (``vision_process.py``, identical in 0.0.10 and 0.0.14)
QWEN_FRAME_FACTOR = 2
QWEN_FPS_MIN_FRAMES = 4
QWEN_FPS_MAX_FRAMES = 768


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
    step = video_fps / fps  # a float of its own before the product, as in VLMEvalKit
    return [min(int(i * step), num_frames - 1) for i in range(wanted)]


def _even(number: float, rounding) -> int:
    return rounding(number / QWEN_FRAME_FACTOR) * QWEN_FRAME_FACTOR


def qwen_frame_count(num_frames: int, video_fps: float, count: int | None = None, fps: float | None = None) -> int:
    """How many frames qwen-vl-utils takes: ``count`` frames, or ``fps`` with ``count`` as its cap.

    A one-frame video, which qwen-vl-utils refuses, gives that frame twice: one temporal patch, the
    input Qwen's processor builds from a single frame by repeating it.
    """
    if num_frames < QWEN_FRAME_FACTOR:
        return QWEN_FRAME_FACTOR
    if fps is None:
        wanted = count if num_frames >= count else num_frames // QWEN_FRAME_FACTOR * QWEN_FRAME_FACTOR
        frames = _even(wanted, round)
    else:
        least = _even(QWEN_FPS_MIN_FRAMES, math.ceil)
        most = _even(count if count is not None else min(QWEN_FPS_MAX_FRAMES, num_frames), math.floor)
        frames = _even(min(max(num_frames / video_fps * fps, least), most, num_frames), math.floor)
    if not QWEN_FRAME_FACTOR <= frames <= num_frames:
        raise ValueError(f"qwen-vl-utils takes {QWEN_FRAME_FACTOR} to {num_frames} frames of this video, the rule gives {frames}")
    return frames


def linspace_indices(num_frames: int, count: int) -> list[int]:
    """``count`` frames from the first to the last, evenly (qwen-vl-utils: float32 linspace, rounded)."""
    import torch  # its float32 linspace itself: on long videos exact arithmetic rounds some frames differently

    return torch.linspace(0, num_frames - 1, count).round().long().tolist()


def frame_indices(
    info: VideoInfo, max_frames: int | None = DEFAULT_FRAMES, fps: float | None = None, rule: str = VLMEVALKIT_IMAGES
) -> list[int]:
    """The frames ``rule`` takes; ``max_frames`` None = the rule's default (8; with fps: 8, or 768 for qwen)."""
    if rule not in RULES:
        raise ValueError(f"unknown frame sampling rule {rule!r}; known: {', '.join(RULES)}")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    if rule == QWEN_VL_UTILS:
        count = max_frames if max_frames is not None or fps is not None else DEFAULT_FRAMES
        return linspace_indices(info.num_frames, qwen_frame_count(info.num_frames, info.fps, count, fps))
    max_frames = DEFAULT_FRAMES if max_frames is None else max_frames
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


def sample_video(
    path: str | Path, max_frames: int | None = DEFAULT_FRAMES, fps: float | None = None, rule: str = VLMEVALKIT_IMAGES
) -> SampledVideo:
    info = video_info(path)
    try:
        indices = frame_indices(info, max_frames, fps, rule)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    frames = read_frames(path, indices)
    return SampledVideo(frames, indices, len(indices) / info.duration)
