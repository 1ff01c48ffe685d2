"""Tiny video files written offline with PyAV: frame k is drawn so that its index can be read back."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np


def frame_pixels(index: int, size: tuple[int, int], still: bool = False) -> np.ndarray:
    """An (h, w, 3) uint8 frame: red/green gradients (every patch differs), blue and a square by ``index``
    (``still``: the blue of frame 0 throughout, so only the square moves)."""
    height, width = size
    pixels = np.empty((height, width, 3), dtype=np.uint8)
    pixels[..., 0] = np.linspace(0, 255, width, dtype=np.uint8)[None, :]
    pixels[..., 1] = np.linspace(0, 255, height, dtype=np.uint8)[:, None]
    pixels[..., 2] = (0 if still else index * 37) % 200 + 20
    top, left = (index * 3) % max(1, height - 8), (index * 5) % max(1, width - 8)
    pixels[top : top + 8, left : left + 8] = 255
    return pixels


def write_video(path: str | Path, num_frames: int = 24, size: tuple[int, int] = (56, 84), fps: int = 8,
                start_frame: int = 0, b_frames: int = 0, still: bool = False) -> Path:  # fmt: skip
    """An MPEG-4 part 2 file (FFmpeg's own encoder, in every PyAV build) of ``num_frames`` frames.

    ``start_frame`` > 0 makes the first frame's time ``start_frame / fps`` instead of 0 (the file's
    start time then says so, as in many real files); ``b_frames`` > 0 encodes with that many
    B-frames between reference frames (decoding order differs from display order); ``still``: only
    a small square moves, so most of each frame repeats the one before (token compression drops it).
    """
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.height, stream.width = size
        stream.pix_fmt = "yuv420p"
        # every frame a key frame, decoded exactly where it was drawn (unless B-frames are asked for)
        stream.codec_context.gop_size = 12 if b_frames else 1
        stream.codec_context.max_b_frames = b_frames
        stream.codec_context.time_base = Fraction(1, fps)
        stream.bit_rate = 8_000_000  # far above what 56 x 84 frames need: near-lossless
        for index in range(num_frames):
            frame = av.VideoFrame.from_ndarray(frame_pixels(index, size, still), format="rgb24")
            frame.pts, frame.time_base = start_frame + index, Fraction(1, fps)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
