"""Fabricated MMMU-Pro rows in the real schema, written as a local snapshot of the hub repository.

``write_mmmu_pro_snapshot(root)`` creates ``root/MMMU/MMMU_Pro/`` with a README whose ``configs:``
header maps the three configs to parquet files, exactly as ``huggingface-cli download`` lays the
real dataset out, so ``LMMS_TEXTDOM_DATA=root`` makes the tasks load it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

REPO = "MMMU/MMMU_Pro"
CONFIGS = {"standard (10 options)": 10, "standard (4 options)": 4, "vision": 10}
SUBJECTS = ["Art_Theory", "Chemistry", "History", "Math", "Physics", "Psychology"]
WORDS = ["cat", "mat", "chart", "table", "diagram", "photo", "first", "second", "third", "picture"]
README = """---
license: apache-2.0
configs:
{configs}---
Fabricated MMMU-Pro rows (random drawings) in the real schema, for offline tests and demos.
"""


def drawn_image(seed: int, size: int = 64, label: str = "") -> Image.Image:
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(0, 256, 3)))
    draw = ImageDraw.Draw(image)
    for _ in range(4):
        x, y = (int(v) for v in rng.integers(0, size * 3 // 4, 2))
        w, h = (int(v) for v in rng.integers(size // 8, size // 3, 2))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x, y, x + w, y + h], fill=colour)
    if label:
        draw.text((2, 2), label, fill=(0, 0, 0))
    return image


def _options(rng: np.random.Generator, count: int) -> list[str]:
    return [" ".join(rng.choice(WORDS, 2)) for _ in range(count)]


def standard_rows(count: int, options: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(count):
        opts = _options(rng, options)
        num_images = 1 + i % 3
        refs = " and ".join(f"<image {n}>" for n in range(1, num_images + 1))
        question = f"Which option is correct for {refs} ?"
        if i % 3 == 2:  # an option that is itself an image, referenced out of order, and a repeated reference
            opts[1] = f"<image {num_images}>"
            question += " Compare again with <image 1> ."
        row = {
            "id": f"test_{SUBJECTS[i % len(SUBJECTS)]}_{i + 1}",
            "question": question,
            "options": str(opts),
            "explanation": "?",
            "img_type": "['Diagrams']",
            "answer": "ABCDEFGHIJ"[int(rng.integers(0, options))],
            "topic_difficulty": ["Easy", "Medium", "Hard"][i % 3],
            "subject": SUBJECTS[i % len(SUBJECTS)],
        }
        for n in range(1, 8):
            row[f"image_{n}"] = drawn_image(seed * 1000 + i * 10 + n) if n <= num_images else None
        rows.append(row)
    return rows


def vision_rows(count: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed + 7)
    rows = []
    for i in range(count):
        opts = _options(rng, 10)
        screenshot = drawn_image(seed * 1000 + 500 + i, size=96, label="Q: which ? " + " ".join(opts[:2]))
        rows.append(
            {
                "id": f"test_{SUBJECTS[i % len(SUBJECTS)]}_{i + 1}",
                "image": screenshot,
                "options": str(opts),
                "answer": "ABCDEFGHIJ"[int(rng.integers(0, 10))],
                "subject": SUBJECTS[i % len(SUBJECTS)],
            }
        )
    return rows


#: sides of the smallest images: one 14-px patch (Qwen2.5-VL, Kimi-VL, SigLIP) and a single pixel
ONE_PATCH, ONE_PIXEL = 14, 1


def smallest_row(config: str, options: int) -> dict:
    """A question on the smallest image a family's input builder can get: one patch (standard), one pixel (vision)."""
    rng = np.random.default_rng(99)
    opts = _options(rng, options)
    row = {"id": "test_Math_0", "options": str(opts), "answer": "A", "subject": "Math"}
    if config == "vision":
        return {**row, "image": Image.new("RGB", (ONE_PIXEL, ONE_PIXEL), (200, 40, 90))}
    row.update(question="Which option is correct for <image 1> ?", explanation="?", img_type="['Diagrams']", topic_difficulty="Easy")
    row.update({f"image_{n}": drawn_image(98, size=ONE_PATCH) if n == 1 else None for n in range(1, 8)})
    return row


def features_for(config: str):
    from datasets import Features, Image as ImageFeature, Value

    if config == "vision":
        return Features({"id": Value("string"), "image": ImageFeature(), "options": Value("string"), "answer": Value("string"), "subject": Value("string")})
    columns = {"id": Value("string"), "question": Value("string"), "options": Value("string"), "explanation": Value("string")}
    columns.update({f"image_{n}": ImageFeature() for n in range(1, 8)})
    columns.update({k: Value("string") for k in ("img_type", "answer", "topic_difficulty", "subject")})
    return Features(columns)


def write_mmmu_pro_snapshot(root: str | Path, rows_per_config: int = 6, seed: int = 0, smallest_first: bool = False) -> Path:
    """Write the snapshot under ``root/MMMU/MMMU_Pro`` and return that folder.

    ``smallest_first`` puts a ``smallest_row`` before the others in every config.
    """
    from datasets import Dataset

    folder = Path(root) / REPO
    header = ""
    for config, options in CONFIGS.items():
        rows = vision_rows(rows_per_config, seed) if config == "vision" else standard_rows(rows_per_config, options, seed)
        if smallest_first:
            rows.insert(0, smallest_row(config, options))
        columns = {key: [row[key] for row in rows] for key in rows[0]}
        (folder / config).mkdir(parents=True, exist_ok=True)
        Dataset.from_dict(columns, features=features_for(config)).to_parquet(str(folder / config / "test-00000-of-00001.parquet"))
        header += f"- config_name: {config}\n  data_files:\n  - split: test\n    path: {config}/test-*\n"
    (folder / "README.md").write_text(README.format(configs=header))
    return folder
