"""Fabricated time-series question data in the real schemas, for offline tests, the demo and table2.

- ``write_timeseries_exam_snapshot(root)``: ``root/AutonLab/TimeSeriesExam1/`` as the hub repository
  lays it out (README with a ``configs:`` header, ``data/test-00000-of-00001.parquet``), with the
  columns of its ``test`` split: ``question``, ``options`` (list of str), ``answer`` (the option
  text), ``question_type``, ``tid``, ``difficulty``, ``format_hint``, ``relevant_concepts``,
  ``question_hint``, ``category``, ``subcategory``, ``id``, ``ts1`` and ``ts2`` (float lists; ``ts2``
  empty for single-series questions). Synthetic series, invented questions.
- ``write_chatts_eval_files(root)``: ``root/ChatTS/dataset_a.json`` and ``dataset_b.json`` in the
  schema of ChatTS's evaluation files (``question`` with one ``<ts><ts/>`` per series,
  ``timeseries``, ``cols``, ``answer``, ``attributes``, ``ability_types``), one item per ability type
  that ChatTS's ``evaluate_qa.py`` knows, with invented attributes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

EXAM_REPO = "AutonLab/TimeSeriesExam1"
EXAM_CATEGORIES = ("Pattern Recognition", "Noise Understanding", "Anomaly Detection", "Similarity Analysis", "Causality Analysis")
README = """---
license: mit
configs:
- config_name: default
  data_files:
  - split: test
    path: data/test-*
---
Fabricated rows in the schema of AutonLab/TimeSeriesExam1 (synthetic series, invented questions), for offline tests.
"""


def synthetic_series(rng, length: int) -> list[float]:
    t = np.arange(length)
    return list(rng.uniform(-5, 50) + rng.uniform(-0.2, 0.2) * t + rng.uniform(0, 6) * np.sin(2 * np.pi * t / rng.uniform(5, 20))
                + rng.standard_normal(length))  # fmt: skip


def exam_rows(count: int, seed: int = 0) -> list[dict]:
    """``count`` rows; every fourth has a second series (filtered out by the single-series task)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(count):
        options = ["The series trends upward", "The series trends downward", "The series has no trend"][: 2 + i % 2]
        two = i % 4 == 3
        rows.append({
            "question": f"Question {i}: what best describes the trend of the series?",
            "options": options,
            "answer": options[i % len(options)],
            "question_type": "MCQ",
            "tid": i,
            "difficulty": ("easy", "medium", "hard")[i % 3],
            "format_hint": "Answer with the option text.",
            "relevant_concepts": ["trend"],
            "question_hint": "",
            "category": EXAM_CATEGORIES[i % 3 if not two else 3],
            "subcategory": "trend",
            "id": 1000 + i,
            "ts1": synthetic_series(rng, int(rng.integers(9, 40))),
            "ts2": synthetic_series(rng, 20) if two else [],
        })  # fmt: skip
    return rows


def smallest_row() -> dict:
    """A single-series question on a series of one sample."""
    options = ["The series is constant", "The series trends upward"]
    return {
        "question": "Question S: what best describes a series of one value?", "options": options, "answer": options[0],
        "question_type": "MCQ", "tid": 999, "difficulty": "easy", "format_hint": "Answer with the option text.",
        "relevant_concepts": ["trend"], "question_hint": "", "category": EXAM_CATEGORIES[0], "subcategory": "trend",
        "id": 999, "ts1": [3.5], "ts2": [],
    }  # fmt: skip


def write_timeseries_exam_snapshot(root: str | Path, rows: int = 8, seed: int = 0, smallest_first: bool = False) -> Path:
    """``smallest_first`` puts a ``smallest_row`` (a one-sample series) before the others."""
    from datasets import Dataset

    folder = Path(root) / EXAM_REPO
    (folder / "data").mkdir(parents=True, exist_ok=True)
    data = ([smallest_row()] if smallest_first else []) + exam_rows(rows, seed)
    Dataset.from_list(data).to_parquet(str(folder / "data" / "test-00000-of-00001.parquet"))
    (folder / "README.md").write_text(README)
    return folder


def chatts_eval_items(seed: int = 0) -> list[dict]:
    """One item per ability type of ChatTS's evaluation (inductive ones need RAGAS upstream)."""
    rng = np.random.default_rng(seed)
    one = lambda: [synthetic_series(rng, int(rng.integers(12, 40)))]  # noqa: E731
    two = lambda: [synthetic_series(rng, 16), synthetic_series(rng, 24)]  # noqa: E731
    q1 = "You are given a time series of length 30: <ts><ts/>. "
    q2 = "Metric cpu: <ts><ts/>; metric mem: <ts><ts/>. "
    local = {"type": ["upward spike"], "position": 12, "amplitude": 5.0, "explain": "a burst of traffic"}
    return [
        {"question": q1 + "1. Describe the trend. 2. Describe the periodicity. 3. Describe the noise.", "timeseries": one(),
         "cols": ["value"], "answer": "1. increasing 2. periodic 3. noisy",
         "attributes": [{"type": "increase", "start": 3.0, "amplitude": 10.0},
                        {"type": "periodic fluctuation", "period": 8.0, "amplitude": 2.0},
                        {"type": "noisy", "std": 0.5}],
         "ability_types": ["trend", "season", "noise"]},
        {"question": q1 + "Describe the local fluctuations.", "timeseries": one(), "cols": ["value"],
         "answer": "upward spike, position around point 12, amplitude 5.0", "attributes": [[local]], "ability_types": ["local"]},
        {"question": q1 + "Describe the local fluctuations and explain them.", "timeseries": one(), "cols": ["value"],
         "answer": "upward spike, position around point 12, amplitude 5.0. a burst of traffic",
         "attributes": [[local]], "ability_types": ["local-inductive"]},
        {"question": q2 + "Are they correlated? Explain.", "timeseries": two(), "cols": ["cpu", "mem"],
         "answer": "Yes, both rise. They share a load.", "attributes": [{"label": True, "explain": "they share a load"}],
         "ability_types": ["shape-correlation-inductive"]},
        {"question": q2 + "Which metrics have a similar trend? Explain.", "timeseries": two(), "cols": ["cpu", "mem"],
         "answer": "cpu, mem. Both follow the load.", "attributes": [{"cols": ["cpu", "mem"], "explain": "both follow the load"}],
         "ability_types": ["shape-cluster-inductive"]},
        {"question": q1 + "Is the system healthy? Answer yes or no.", "timeseries": one(), "cols": ["value"], "answer": "Yes.",
         "attributes": ["Yes. The values stay in range."], "ability_types": ["deductive"]},
        {"question": q1 + "What could cause this?", "timeseries": one(), "cols": ["value"], "answer": "A memory leak.",
         "attributes": ["The service restarted after a deploy."], "ability_types": ["deductive"]},
        {"question": q1 + "Which event caused it: memory leak or disk full?", "timeseries": one(), "cols": ["value"],
         "answer": "Memory leak.", "attributes": ["Memory leak. The curve grows steadily."], "ability_types": ["causal"]},
        {"question": q1 + "Which metric is shown? A) cpu B) latency", "timeseries": one(), "cols": ["value"],
         "answer": "latency", "attributes": ["latency"], "ability_types": ["MCQ2"]},
    ]  # fmt: skip


def write_chatts_eval_files(root: str | Path, seed: int = 0) -> Path:
    """``root/ChatTS/dataset_a.json`` (first five items) and ``dataset_b.json`` (the rest)."""
    folder = Path(root) / "ChatTS"
    folder.mkdir(parents=True, exist_ok=True)
    items = chatts_eval_items(seed)
    (folder / "dataset_a.json").write_text(json.dumps(items[:5]))
    (folder / "dataset_b.json").write_text(json.dumps(items[5:]))
    return folder
