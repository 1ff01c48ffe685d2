"""ChatTS's own evaluation sets (``dataset_a.json``, ``dataset_b.json``) for lmms-eval.

The files are published on Zenodo only (DOI 10.5281/zenodo.14349206), so they are read from
``$LMMS_TEXTDOM_DATA/ChatTS/``. Each item's question already holds one ``<ts><ts/>`` per series;
scoring follows ChatTS's ``evaluate_qa.py`` (``scoring.py``), RAGAS-judged reasons counted as not scored.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from loguru import logger

from lmms_textdom.core.errors import UsageError
from lmms_textdom.integration.data import ENV, loud_process_docs
from lmms_textdom.integration.hook import split_response, textdom_metrics
from lmms_textdom.tasks.chatts_eval.scoring import score_item

FOLDER = "ChatTS"
FILES = ("dataset_a.json", "dataset_b.json")
LAYOUT = (
    f"Download dataset_a.json and dataset_b.json from Zenodo (DOI 10.5281/zenodo.14349206) and set {ENV} to a folder holding\n"
    f"  ${ENV}/{FOLDER}/dataset_a.json\n  ${ENV}/{FOLDER}/dataset_b.json\n(one of the two is enough)."
)
#: fields kept as JSON text: their shapes differ between items, which an Arrow table cannot hold
JSON_FIELDS = ("timeseries", "cols", "attributes", "ability_types")


def _load():
    import datasets

    root = os.environ.get(ENV)
    if not root:
        raise UsageError(f"chatts_eval_textdom reads ChatTS's evaluation files, which are not on the hub.\n{LAYOUT}")
    folder = Path(root).expanduser() / FOLDER
    present = [folder / name for name in FILES if (folder / name).is_file()]
    if not present:
        raise UsageError(f"{ENV}={root} is set, but {folder} holds neither {' nor '.join(FILES)}.\n{LAYOUT}")
    rows = []
    for path in present:
        items = json.loads(path.read_text())
        for index, item in enumerate(items):
            row = {"source": path.stem, "index": index, "question": item["question"], "answer": str(item.get("answer", ""))}
            row.update({name: json.dumps(item[name]) for name in JSON_FIELDS})
            rows.append(row)
        logger.info(f"ChatTS evaluation: {len(items)} items from {path}")
    return datasets.Dataset.from_list(rows)


load_items = loud_process_docs(_load, "load_items")


def doc_to_visual(doc):
    return json.loads(doc["timeseries"])


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    return doc["question"]


def doc_to_target(doc) -> str:
    return doc["answer"]


def process_results(doc, results):
    texts, payload = split_response(results)
    scores, unknown = score_item(texts[0] if texts else "", *(json.loads(doc[name]) for name in ("attributes", "ability_types", "cols")))
    if unknown:
        logger.warning(f"ChatTS evaluation {doc['source']}[{doc['index']}]: no rule for ability types {unknown}; not scored")
    return {
        "categorical": scores.categorical,
        "numerical": scores.numerical,
        "reason": scores.reason,
        "not_scored": scores.unscored,
        **textdom_metrics(payload),
    }


def pooled_mean(items) -> float | None:
    """Mean over every sub-answer of every item, as ChatTS reports its overall scores."""
    values = [float(v) for item in items for v in item]
    return math.fsum(values) / len(values) if values else None


def count(items) -> int:
    return int(sum(items))
