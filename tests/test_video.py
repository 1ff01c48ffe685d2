"""Frame sampling rules (VLMEvalKit's) and decoding of real video files written offline."""

from __future__ import annotations

import numpy as np
import pytest

from lmms_textdom.tiny.videos import frame_pixels
from lmms_textdom.media.video import VideoInfo, fps_indices, frame_indices, read_frames, sample_video, uniform_indices, video_info


def test_uniform_sampling_excludes_the_endpoints():
    # step = 24 / 9 = 2.67: int(2.67), int(5.33), ...
    assert uniform_indices(24, 8) == [2, 5, 8, 10, 13, 16, 18, 21]
    assert uniform_indices(300, 1) == [150]
    assert uniform_indices(4, 8) == [0, 0, 1, 1, 2, 2, 3, 3]  # more frames asked than exist: repeats


def test_fps_sampling_takes_one_frame_per_period_from_the_start():
    assert fps_indices(24, 8.0, 2.0) == [0, 4, 8, 12, 16, 20]  # 3 s x 2 fps
    assert fps_indices(37, 10.0, 1.0) == [0, 10, 20]  # int(3.7 s x 1) = 3 frames
    assert fps_indices(5, 25.0, 1.0) == [0]  # shorter than one period: still one frame


def test_frame_cap_falls_back_to_uniform_frames_over_the_whole_video():
    info = VideoInfo(num_frames=300, fps=30.0)  # 10 s
    assert frame_indices(info, max_frames=16, fps=1.0) == list(range(0, 300, 30))  # 10 frames fit the cap
    assert frame_indices(info, max_frames=4, fps=1.0) == uniform_indices(300, 4) == [60, 120, 180, 240]
    assert frame_indices(info) == uniform_indices(300, 8)
    with pytest.raises(ValueError, match="max_frames must be >= 1"):
        frame_indices(info, max_frames=0)


def drawn_index(frame, candidates: int, size) -> int:
    pixels = np.asarray(frame).astype(float)
    return int(np.argmin([np.abs(pixels - frame_pixels(i, size)).mean() for i in range(candidates)]))


def test_decoded_frames_are_the_sampled_ones(tiny_videos):
    short, odd = tiny_videos
    assert video_info(short) == VideoInfo(24, 8.0) and video_info(odd) == VideoInfo(37, 10.0)
    sampled = sample_video(short)
    assert sampled.indices == [2, 5, 8, 10, 13, 16, 18, 21]
    assert sampled.sampled_fps == pytest.approx(8 / 3.0)
    assert all(frame.size == (84, 56) and frame.mode == "RGB" for frame in sampled.frames)
    assert [drawn_index(f, 24, (56, 84)) for f in sampled.frames] == sampled.indices
    by_fps = sample_video(odd, max_frames=8, fps=2.0)
    assert by_fps.indices == [0, 5, 10, 15, 20, 25, 30] and by_fps.sampled_fps == pytest.approx(7 / 3.7)
    assert [drawn_index(f, 37, (56, 56)) for f in by_fps.frames] == by_fps.indices


def test_repeated_and_unordered_indices_and_bad_files(tiny_videos, tmp_path):
    short, _ = tiny_videos
    frames = read_frames(short, [7, 3, 7])
    assert [drawn_index(f, 24, (56, 84)) for f in frames] == [7, 3, 7]
    with pytest.raises(ValueError, match="past the last decodable frame"):
        read_frames(short, [3, 40])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        video_info(tmp_path / "missing.mp4")
