"""Audio decoding, mono mixing and resampling against signals whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from lmms_textdom.media.audio import clip_at_rate, decode_audio, resample, to_mono
from lmms_textdom.core.errors import UsageError
from lmms_textdom.tiny.iemocap_data import synthetic_clip, wav_bytes


def tone(frequency: float, rate: int, seconds: float = 1.0) -> np.ndarray:
    return np.sin(2 * np.pi * frequency * np.arange(int(rate * seconds)) / rate).astype(np.float32)


def peak_frequency(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[np.argmax(spectrum)])


@pytest.mark.parametrize("rate", [8000, 22050, 44100, 48000])
def test_resampling_to_16k_keeps_duration_and_pitch(rate):
    out = resample(tone(440.0, rate), rate, 16000)
    assert out.dtype == np.float32 and len(out) == 16000
    assert peak_frequency(out, 16000) == pytest.approx(440.0, abs=1.0)
    reference = tone(440.0, 16000)
    assert np.abs(out[500:-500] - reference[500:-500]).max() < 0.02  # away from the filter's edges


def test_16k_input_passes_unchanged():
    clip = synthetic_clip(0, 0.5)
    assert np.array_equal(resample(clip, 16000, 16000), clip)


@pytest.mark.parametrize("layout", ["samples_channels", "channels_samples"])
def test_stereo_is_averaged_to_mono(layout):
    left, right = tone(200.0, 16000), np.zeros(16000, dtype=np.float32)
    stereo = np.stack([left, right], axis=1 if layout == "samples_channels" else 0)
    np.testing.assert_allclose(to_mono(stereo), left / 2, atol=1e-7)


def test_wav_bytes_decode_to_the_samples():
    clip = synthetic_clip(1, 0.6)
    samples, rate = decode_audio(wav_bytes(clip))
    assert rate == 16000 and samples.dtype == np.float32 and samples.shape == clip.shape
    assert np.abs(samples - clip).max() <= 1 / 2**15  # 16-bit PCM


def test_decode_reads_a_path_when_there_are_no_bytes(tmp_path):
    path = tmp_path / "clip.wav"
    path.write_bytes(wav_bytes(synthetic_clip(2, 0.3, rate=8000), rate=8000))
    samples, rate = decode_audio(None, str(path))
    assert (rate, len(samples)) == (8000, 2400)


def test_a_non_audio_visual_names_the_expected_form():
    with pytest.raises(UsageError, match="expected audio as a \\{'array', 'sampling_rate'\\} item .* got str"):
        clip_at_rate("clip.wav", 16000)
