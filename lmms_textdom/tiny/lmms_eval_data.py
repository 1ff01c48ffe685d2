"""Fabricated rows for some of lmms-eval's own tasks, written into a Hugging Face datasets cache.

lmms-eval loads its tasks with ``datasets.load_dataset(<hub id>, <config>)``. Offline, ``datasets``
falls back to the newest cached copy under ``<cache>/<namespace>___<name>/<config>/<version>/<hash>``;
``write_hub_cache`` writes such a copy, so the real task configurations run unchanged with
``HF_DATASETS_CACHE=<cache>`` (or ``LMMS_EVAL_DATASETS_CACHE``) and no hub.

Rows follow each dataset's real columns: ``ai2d`` (lmms-lab-encoder/ai2d), ``mme``
(lmms-lab-encoder/MME, pairs of yes/no questions per image) and the ``blink`` group
(BLINK-Benchmark/BLINK, one config per subtask).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from datasets import Dataset, Features, Image, Sequence, Value
from datasets.naming import camelcase_to_snakecase

from lmms_textdom.tiny.mmmu_pro_data import drawn_image

BLINK_CONFIGS = {
    "blink_art_style": "Art_Style", "blink_counting": "Counting", "blink_forensic_detection": "Forensic_Detection",
    "blink_functional_correspondence": "Functional_Correspondence", "blink_iq_test": "IQ_Test",
    "blink_jigsaw": "Jigsaw", "blink_multi_view_reasoning": "Multi-view_Reasoning",
    "blink_object_localization": "Object_Localization", "blink_relative_depth": "Relative_Depth",
    "blink_relative_reflectance": "Relative_Reflectance", "blink_semantic_correspondence": "Semantic_Correspondence",
    "blink_spatial_relation": "Spatial_Relation", "blink_visual_correspondence": "Visual_Correspondence",
    "blink_visual_similarity": "Visual_Similarity",
}  # fmt: skip


def write_hub_cache(cache: Path, repo_id: str, splits: dict[str, Dataset], config_name: str = "default") -> Path:
    """Write ``splits`` where ``load_dataset(repo_id, config_name)`` finds them offline."""
    from datasets.packaged_modules.parquet.parquet import Parquet

    name = repo_id.split("/")[-1]
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for split, rows in splits.items():
            files[split] = [str(Path(tmp) / f"{split}.parquet")]
            rows.to_parquet(files[split][0])
        features = next(iter(splits.values())).features
        builder = Parquet(
            cache_dir=str(Path(tmp) / "build"), dataset_name=name, config_name=config_name,
            hash="fabricated", data_files=files, features=features,
        )  # fmt: skip
        builder.download_and_prepare()
        namespace, short = repo_id.split("/")
        target = Path(cache) / f"{namespace}___{camelcase_to_snakecase(short)}" / config_name / "0.0.0" / "fabricated"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(builder.cache_dir, target)
    return target


def ai2d_rows(n: int = 4) -> Dataset:
    features = Features({
        "question": Value("string"), "options": Sequence(Value("string")), "answer": Value("string"), "image": Image(),
    })  # fmt: skip
    rows = [
        {
            "question": ["which label names the largest part ?", "what does the arrow point at ?"][i % 2],
            "options": [["leaf", "stem", "root", "flower"], ["sun", "moon", "earth"]][i % 2],
            "answer": str(i % 3),
            "image": drawn_image(100 + i),
        }
        for i in range(n)
    ]
    return Dataset.from_list(rows, features=features)


def mme_rows(pairs: int = 2) -> Dataset:
    """``pairs`` images, each with its yes and its no question (MME scores them as pairs)."""
    features = Features({
        "question_id": Value("string"), "image": Image(), "question": Value("string"),
        "answer": Value("string"), "category": Value("string"),
    })  # fmt: skip
    categories = ["existence", "commonsense_reasoning", "color", "code_reasoning"]
    rows = []
    for p in range(pairs):
        category = categories[p % len(categories)]
        for answer, thing in (("Yes", "a circle"), ("No", "a dog")):
            rows.append({
                "question_id": f"{category}/{p:04d}.png",
                "image": drawn_image(200 + p),
                "question": f"Is there {thing} in this image? Please answer yes or no.",
                "answer": answer,
                "category": category,
            })  # fmt: skip
    return Dataset.from_list(rows, features=features)


def blink_rows(config: str, n: int = 1) -> Dataset:
    features = Features({
        "idx": Value("string"), "question": Value("string"), "sub_task": Value("string"),
        **{f"image_{k}": Image() for k in range(1, 5)},
        "choices": Sequence(Value("string")), "answer": Value("string"),
        "prompt": Value("string"), "explanation": Value("string"),
    })  # fmt: skip
    rows = []
    for i in range(n):
        question = "Which option describes the image best?"
        choices = ["a drawing", "a photo"]
        rows.append({
            "idx": f"val_{config}_{i + 1}", "question": question, "sub_task": config.replace("_", " "),
            "image_1": drawn_image(300 + i + len(config)), "image_2": None, "image_3": None, "image_4": None,
            "choices": choices, "answer": "(A)" if i % 2 == 0 else "(B)",
            "prompt": f"{question}\nSelect from the following choices.\n(A) {choices[0]}\n(B) {choices[1]}",
            "explanation": "",
        })  # fmt: skip
    return Dataset.from_list(rows, features=features)


def write_lmms_eval_cache(cache: Path) -> Path:
    """The cache behind ``ai2d``, ``mme`` and the ``blink`` group, fabricated."""
    write_hub_cache(cache, "lmms-lab-encoder/ai2d", {"test": ai2d_rows()})
    write_hub_cache(cache, "lmms-lab-encoder/MME", {"test": mme_rows()})
    for config in BLINK_CONFIGS.values():
        write_hub_cache(cache, "BLINK-Benchmark/BLINK", {"val": blink_rows(config)}, config_name=config)
    return Path(cache)
