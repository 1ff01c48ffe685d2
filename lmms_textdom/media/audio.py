"""Audio clips as the models want them: decoded from file bytes, mono, float32, resampled.

``datasets`` 5.x decodes its ``Audio`` feature with torchcodec, which has no build beside CPU torch;
tasks therefore read the column undecoded and call ``decode_audio`` (soundfile). Resampling uses a
polyphase filter (scipy), exact for the integer rate ratios of speech corpora (8/22.05/44.1/48 kHz).
"""

from __future__ import annotations

import io
from math import gcd
from typing import Any

import numpy as np

from lmms_textdom.core.errors import UsageError


def to_mono(samples: np.ndarray) -> np.ndarray:
    """Average the channels of a 2-D clip into one float32 channel.

    soundfile lays clips out as (samples, channels), torchcodec as (channels, samples); channels are
    always far fewer than samples, so the shorter axis is the channel axis.
    """
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim == 2:
        samples = samples.mean(axis=int(np.argmin(samples.shape)))
    if samples.ndim != 1:
        raise ValueError(f"an audio clip must be 1-D (mono) or 2-D (with channels), not of shape {samples.shape}")
    return samples


def decode_audio(data: bytes | None, path: str | None = None) -> tuple[np.ndarray, int]:
    """(mono float32 samples, sampling rate) of an audio file given as bytes, or else read from ``path``."""
    import soundfile

    source = io.BytesIO(data) if data else path
    if source is None:
        raise ValueError("an audio entry holds neither bytes nor a path")
    samples, rate = soundfile.read(source, dtype="float32", always_2d=False)
    return to_mono(samples), int(rate)


def resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    """``samples`` taken at ``rate`` Hz, resampled to ``target`` Hz (float32)."""
    samples = to_mono(samples)
    if rate == target:
        return samples
    if rate <= 0:
        raise ValueError(f"invalid sampling rate {rate}")
    from scipy.signal import resample_poly

    step = gcd(int(rate), int(target))
    return resample_poly(samples, target // step, int(rate) // step).astype(np.float32)


def clip_at_rate(visual: Any, target: int) -> np.ndarray:
    """One ``doc_to_visual`` audio item (``{"array", "sampling_rate"}``) as mono samples at ``target`` Hz."""
    try:
        samples, rate = visual["array"], visual["sampling_rate"]
    except (TypeError, KeyError, IndexError):
        raise UsageError(
            f"expected audio as a {{'array', 'sampling_rate'}} item from the task's doc_to_visual, got {type(visual).__name__}; "
            "this model reads audio tasks only"
        ) from None
    return resample(np.asarray(samples), int(rate), target)
