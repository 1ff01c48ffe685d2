"""The two frame rules against references written here from the upstream code's semantics:
VLMEvalKit's frames-as-images fps step (a float step, then int(i * step)), qwen-vl-utils'
smart_nframes + linspace, and qwen-vl-utils' per-frame pixel budget."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch

from lmms_textdom.media.video import VideoInfo, fps_indices, frame_indices, linspace_indices, sample_video
from lmms_textdom.models.qwen2_5_vl.inputs import frame_pixel_range
from tests.test_video import drawn_index

NTSC = (30000 / 1001, 24000 / 1001, 60000 / 1001)


def vlmevalkit_fps_reference(num_frames: int, video_fps: float, fps: float) -> list[int]:
    """``save_video_frames`` with fps: duration, required frames, step_size, then int(i * step_size)."""
    required = int(num_frames / video_fps * fps)
    step_size = video_fps / fps
    return [int(i * step_size) for i in range(required)]


@pytest.mark.parametrize("video_fps", [*NTSC, 25.0, 29.97, 23.976])
@pytest.mark.parametrize("fps", [0.5, 1.0, 1.5, 2.0, 3.0])
def test_fps_indices_equal_vlmevalkits_step_arithmetic(video_fps, fps):
    num_frames = 20_000
    assert fps_indices(num_frames, video_fps, fps) == vlmevalkit_fps_reference(num_frames, video_fps, fps)


def test_the_one_product_form_would_be_a_frame_off_at_ntsc_rates():
    video_fps = 30000 / 1001
    indices = fps_indices(100_000, video_fps, 1.5)
    assert indices[3003] == 59999
    assert int(3003 * video_fps / 1.5) == 60000, "the form the step arithmetic replaces"
    differing = [i for i, index in enumerate(indices) if index != int(i * video_fps / 1.5)]
    assert 3003 in differing


def qwen_nframes_reference(total: int, video_fps: float, nframes: int | None = None, fps: float | None = None, max_frames=None) -> int:
    """qwen-vl-utils' smart_nframes (FRAME_FACTOR 2, FPS_MIN_FRAMES 4, FPS_MAX_FRAMES 768), after
    VLMEvalKit's guard for videos shorter than the frame count (frame_count // 2 * 2)."""
    if fps is None:
        nframes = nframes if total >= nframes else total // 2 * 2
        return round(nframes / 2) * 2
    least = math.ceil(4 / 2) * 2
    most = math.floor((max_frames if max_frames is not None else min(768, total)) / 2) * 2
    wanted = min(min(max(total / video_fps * fps, least), most), total)
    return math.floor(wanted / 2) * 2


def linspace_reference(total: int, count: int) -> list[int]:
    """linspace(0, total - 1, count) rounded half to even, in exact arithmetic (equal to qwen-vl-utils'
    float32 torch.linspace below a few thousand frames)."""
    assert total < 5000, "float32 rounding departs from exact arithmetic on longer videos"
    return [round(Fraction(i * (total - 1), count - 1)) for i in range(count)]


def qwen_linspace(total: int, count: int) -> list[int]:
    """qwen-vl-utils' own expression: torch.linspace(0, total - 1, nframes).round().long() (float32)."""
    return torch.linspace(0, total - 1, count).round().long().tolist()


@pytest.mark.parametrize("total,video_fps", [(24, 8.0), (37, 10.0), (300, 30.0), (1799, 30000 / 1001), (4999, 25.0), (3, 10.0)])
@pytest.mark.parametrize("count", [8, 16, 64])
def test_qwen_frame_counts_take_both_ends_and_even_counts(total, video_fps, count):
    expected_count = qwen_nframes_reference(total, video_fps, nframes=count)
    indices = frame_indices(VideoInfo(total, video_fps), count, rule="qwen_vl_utils")
    assert indices == linspace_reference(total, expected_count)
    assert indices[0] == 0 and indices[-1] == total - 1 and len(indices) % 2 == 0


@pytest.mark.parametrize("total,video_fps", [(24, 8.0), (37, 10.0), (1799, 30000 / 1001), (4999, 25.0)])
@pytest.mark.parametrize("fps,cap", [(1.0, None), (2.0, None), (0.1, None), (1.0, 32)])
def test_qwen_fps_rule_clamps_and_floors_to_even(total, video_fps, fps, cap):
    expected = linspace_reference(total, qwen_nframes_reference(total, video_fps, fps=fps, max_frames=cap))
    assert frame_indices(VideoInfo(total, video_fps), cap, fps, rule="qwen_vl_utils") == expected


@pytest.mark.parametrize("total,video_fps", [(5400, 30.0), (30000, 25.0), (26979, 30000 / 1001)])
def test_long_videos_keep_qwen_vl_utils_float32_rounding(total, video_fps):
    count = qwen_nframes_reference(total, video_fps, fps=1.0)
    indices = frame_indices(VideoInfo(total, video_fps), None, 1.0, rule="qwen_vl_utils")
    assert indices == qwen_linspace(total, count)
    assert len(indices) == count and indices[0] == 0 and indices[-1] == total - 1


def test_qwen_rule_by_hand():
    # 3.7 s at 1 fps is 3.7 frames: raised to FPS_MIN_FRAMES = 4, then linspace(0, 36, 4) = 0, 12, 24, 36
    assert frame_indices(VideoInfo(37, 10.0), None, 1.0, rule="qwen_vl_utils") == [0, 12, 24, 36]
    # 30 min at 30 fps, 1 fps: 1800 frames, capped at FPS_MAX_FRAMES = 768
    assert len(frame_indices(VideoInfo(54000, 30.0), None, 1.0, rule="qwen_vl_utils")) == 768
    # linspace(0, 5, 3) = 0, 2.5, 5: a tie rounds to even, as torch's round does (even counts never tie)
    assert linspace_indices(6, 3) == [0, 2, 5]
    assert frame_indices(VideoInfo(7, 10.0), 2, rule="qwen_vl_utils") == [0, 6]
    # 9 frames asked: round(4.5) * 2 = 8 (Python rounds half to even), as qwen-vl-utils does
    assert len(frame_indices(VideoInfo(100, 10.0), 9, rule="qwen_vl_utils")) == 8
    # a 5-frame clip asked for 8: VLMEvalKit asks qwen-vl-utils for 5 // 2 * 2 = 4
    assert frame_indices(VideoInfo(5, 10.0), 8, rule="qwen_vl_utils") == [0, 1, 3, 4]
    # a one-frame clip, which qwen-vl-utils refuses: that frame twice, one temporal patch (as the processor pads it)
    assert frame_indices(VideoInfo(1, 10.0), 8, rule="qwen_vl_utils") == [0, 0]
    assert frame_indices(VideoInfo(1, 1.0), None, 2.0, rule="qwen_vl_utils") == [0, 0]
    with pytest.raises(ValueError, match="unknown frame sampling rule"):
        frame_indices(VideoInfo(10, 10.0), 8, rule="decord")


def test_the_default_rule_of_the_shared_functions_is_unchanged():
    info = VideoInfo(24, 8.0)
    assert frame_indices(info) == frame_indices(info, 8, None, "vlmevalkit_images") == [2, 5, 8, 10, 13, 16, 18, 21]
    assert frame_indices(info, None) == frame_indices(info, 8)


def test_qwen_sampled_frames_are_decoded(tiny_videos):
    short, odd = tiny_videos
    sampled = sample_video(short, 8, rule="qwen_vl_utils")
    assert sampled.indices == linspace_reference(24, 8) == [0, 3, 7, 10, 13, 16, 20, 23]
    assert [drawn_index(f, 24, (56, 84)) for f in sampled.frames] == sampled.indices
    # qwen-vl-utils' sample_fps: nframes / total_frames * video_fps
    assert sampled.sampled_fps == pytest.approx(8 / 24 * 8.0)
    by_fps = sample_video(odd, None, 2.0, rule="qwen_vl_utils")  # 7.4 frames -> 6
    assert by_fps.indices == linspace_reference(37, 6) and by_fps.sampled_fps == pytest.approx(6 / 37 * 10.0)


def qwen_pixels_reference(frames: int, min_pixels: int, max_pixels: int, total_pixels: int) -> tuple[int, float]:
    """fetch_video: max(min(768 * 28 * 28, total / nframes * 2), int(min * 1.05)), then the given max."""
    limit = max(min(768 * 28 * 28, total_pixels / frames * 2), int(min_pixels * 1.05))
    return min_pixels, min(max_pixels, limit)


@pytest.mark.parametrize(
    "frames,min_pixels,max_pixels,total_pixels",
    [
        (8, 128 * 784, 768 * 784, int(128000 * 784 * 0.9)),  # qwen-vl-utils' defaults
        (180, 128 * 784, 768 * 784, 24576 * 784),  # VLMEvalKit's -ForVideo config at 1 fps, 3 min
        (8, 1280 * 784, 16384 * 784, int(128000 * 784 * 0.9)),  # VLMEvalKit's plain config: ~1.05 M pixels
        (768, 128 * 784, 768 * 784, 24576 * 784),  # the floor: 1.05 x the smallest area
    ],
)
def test_frame_area_follows_qwen_vl_utils_budget(frames, min_pixels, max_pixels, total_pixels):
    assert frame_pixel_range(frames, min_pixels, max_pixels, total_pixels) == qwen_pixels_reference(frames, min_pixels, max_pixels, total_pixels)


def decoded_count_and_rate(path) -> tuple[int, float]:
    """What decord's ``len(vr)`` / ``get_avg_fps()`` (and torchvision's read_video) report: every decoded
    frame, counted from the first one whatever its time, and the stream's average rate."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return sum(1 for _ in container.decode(stream)), float(stream.average_rate)


def test_index_rules_ignore_a_late_first_frame(late_start_videos):
    """qwen-vl-utils and VLMEvalKit's frames-as-images route pick frames by their place in the decoded
    sequence (decord / torchvision indices), so a file whose first frame is at 0.48 s or 0.583 s gets
    the same frame numbers as one starting at 0: no start time enters either rule."""
    for path in late_start_videos.values():
        total, rate = decoded_count_and_rate(path)
        qwen = sample_video(path, 8, rule="qwen_vl_utils")
        assert qwen.indices == linspace_reference(total, qwen_nframes_reference(total, rate, nframes=8))
        assert qwen.sampled_fps == pytest.approx(len(qwen.indices) / total * rate)
        by_fps = sample_video(path, None, 1.0, rule="qwen_vl_utils")
        assert by_fps.indices == linspace_reference(total, qwen_nframes_reference(total, rate, fps=1.0))
        images = sample_video(path, 64, 1.0)
        assert images.indices == vlmevalkit_fps_reference(total, rate, 1.0)
        for sampled in (qwen, by_fps, images):
            assert [drawn_index(f, total, (56, 84)) for f in sampled.frames] == sampled.indices
