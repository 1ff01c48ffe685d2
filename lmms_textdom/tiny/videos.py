"""Tiny video files written offline with PyAV: frame k is drawn so that its index can be read back."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def frame_pixels(index: int, size: tuple[int, int]) -> np.ndarray:
    """An (h, w, 3) uint8 frame: red/green gradients (every patch differs), blue and a square by ``index``."""
    height, width = size
    pixels = np.empty((height, width, 3), dtype=np.uint8)
    pixels[..., 0] = np.linspace(0, 255, width, dtype=np.uint8)[None, :]
    pixels[..., 1] = np.linspace(0, 255, height, dtype=np.uint8)[:, None]
    pixels[..., 2] = (index * 37) % 200 + 20
    top, left = (index * 3) % max(1, height - 8), (index * 5) % max(1, width - 8)
    pixels[top : top + 8, left : left + 8] = 255
    return pixels


def write_video(path: str | Path, num_frames: int = 24, size: tuple[int, int] = (56, 84), fps: int = 8) -> Path:
    """An MPEG-4 part 2 file (FFmpeg's own encoder, in every PyAV build) of ``num_frames`` frames."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.height, stream.width = size
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = 1  # every frame a key frame, decoded exactly where it was drawn
        stream.bit_rate = 8_000_000  # far above what 56 x 84 frames need: near-lossless
        for index in range(num_frames):
            frame = av.VideoFrame.from_ndarray(frame_pixels(index, size), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path
