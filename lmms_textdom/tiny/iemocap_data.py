"""Fabricated IEMOCAP rows in the schema of the hub copy ``Zahra99/IEMOCAP_Audio``, as a local snapshot.

``write_iemocap_snapshot(root)`` creates ``root/Zahra99/IEMOCAP_Audio/`` with a README whose
``configs:`` header maps the five per-session splits to parquet files, as ``huggingface-cli
download`` lays the hub copy out, so ``LMMS_TEXTDOM_DATA=root`` makes ``iemocap_textdom`` load it.
Each row: ``audio`` = Audio(16 kHz) holding a WAV file of a synthetic clip (a tone in noise, no
speech), ``label`` = ClassLabel ["ang", "hap", "neu", "sad"].
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

REPO = "Zahra99/IEMOCAP_Audio"
SESSIONS = tuple(f"session{n}" for n in range(1, 6))
LABELS = ("ang", "hap", "neu", "sad")
SAMPLING_RATE = 16000
#: the shortest clip that still gives Qwen2-Audio one audio token: 321 samples make 3 mel frames
#: (hop 160), 2 after the encoder's stride-2 convolution, 1 after its pooling; 320 give none
SMALLEST_SAMPLES = 321
README = """---
configs:
- config_name: default
  data_files:
{splits}---
Fabricated IEMOCAP rows (synthetic tones, no speech) in the schema of Zahra99/IEMOCAP_Audio, for offline tests.
"""


def synthetic_clip(seed: int, seconds: float, rate: int = SAMPLING_RATE) -> np.ndarray:
    """A float32 tone in noise, peak below 1, of the given length."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    tone = 0.3 * np.sin(2 * np.pi * rng.uniform(120, 400) * t)
    return (tone + 0.05 * rng.standard_normal(t.shape)).astype(np.float32)


def wav_bytes(samples: np.ndarray, rate: int = SAMPLING_RATE) -> bytes:
    import soundfile

    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format="WAV", subtype="PCM_16")  # IEMOCAP's own format
    return buffer.getvalue()


def smallest_row(seed: int = 0) -> dict:
    """An utterance of ``SMALLEST_SAMPLES`` samples (20 ms), labelled "neu"."""
    samples = synthetic_clip(seed + 777, 1.0)[:SMALLEST_SAMPLES]
    return {"audio": {"bytes": wav_bytes(samples), "path": "Ses01F_impro00_F000.wav"}, "label": LABELS.index("neu")}


def session_rows(session: int, count: int, seed: int = 0) -> list[dict]:
    """Rows of one session; durations 0.6, 1.0 or 1.4 s (15, 25 or 35 audio tokens), labels cycling over the 4 classes."""
    rows = []
    for i in range(count):
        index = (session - 1) * count + i
        seconds = 0.6 + 0.4 * (index % 3)
        name = f"Ses0{session}{'FM'[i % 2]}_impro0{i % 9 + 1}_{'FM'[i % 2]}00{i}.wav"
        audio = {"bytes": wav_bytes(synthetic_clip(seed * 1000 + index, seconds)), "path": name}
        rows.append({"audio": audio, "label": index % len(LABELS)})
    return rows


def write_iemocap_snapshot(root: str | Path, rows_per_session: int = 2, seed: int = 0, smallest_first: bool = False) -> Path:
    """Write the snapshot under ``root/Zahra99/IEMOCAP_Audio`` and return that folder.

    ``smallest_first`` puts a ``smallest_row`` first in session 1.
    """
    from datasets import Audio, ClassLabel, Dataset, Features, Value

    folder = Path(root) / REPO
    (folder / "data").mkdir(parents=True, exist_ok=True)
    # Written as plain bytes, then cast: encoding an Audio column directly needs torchcodec.
    plain = Features({"audio": {"bytes": Value("binary"), "path": Value("string")}, "label": ClassLabel(names=list(LABELS))})
    splits = ""
    for n, session in enumerate(SESSIONS, start=1):
        rows = session_rows(n, rows_per_session, seed)
        if smallest_first and n == 1:
            rows.insert(0, smallest_row(seed))
        data = Dataset.from_dict({"audio": [r["audio"] for r in rows], "label": [r["label"] for r in rows]}, features=plain)
        data = data.cast_column("audio", Audio(sampling_rate=SAMPLING_RATE))
        data.to_parquet(str(folder / "data" / f"{session}-00000-of-00001.parquet"))
        splits += f"  - split: {session}\n    path: data/{session}-*\n"
    (folder / "README.md").write_text(README.format(splits=splits))
    return folder
