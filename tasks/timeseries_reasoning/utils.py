"""TimeSeries-Reasoning for lmms-eval: TimeSeriesExam1's single-series multiple-choice questions.

Loading (hub ``AutonLab/TimeSeriesExam1`` or ``$LMMS_TEXTDOM_DATA``), the prompt, parsing and the
per-category accuracy. Rows with a second series (``ts2``) are left out: the paper's
time-series rows measure one series per question.
"""

from __future__ import annotations

import re

from loguru import logger

from lmms_textdom.integration.data import hub_dataset, loud_process_docs
from lmms_textdom.integration.hook import split_response, textdom_metrics
from lmms_textdom.tasks.timeseries_reasoning.parsing import letters, parse_choice

REPO = "AutonLab/TimeSeriesExam1"
CATEGORIES = ("Pattern Recognition", "Noise Understanding", "Anomaly Detection", "Similarity Analysis", "Causality Analysis")
PROMPT = "There is a time series of length {length}: <ts><ts/>.\n{question}\nChoose from the following options:\n{options}\nAnswer with the option letter."


def series_of(doc) -> list[float]:
    """The question's series (``ts1``; ``ts`` in the dataset's first revision)."""
    return list(doc["ts1"] if doc.get("ts1") is not None else doc["ts"])


def is_single_series(doc) -> bool:
    return not doc.get("ts2") and doc["answer"] in doc["options"]


def _load():
    rows = hub_dataset(REPO, None, "test")
    kept = rows.filter(is_single_series)
    logger.info(f"TimeSeriesExam1: {len(kept)} single-series questions of {len(rows)}")
    return kept


load_questions = loud_process_docs(_load, "load_questions")


def doc_to_visual(doc):
    return [series_of(doc)]


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    options = "\n".join(f"{letter}) {option}" for letter, option in zip(letters(len(doc["options"])), doc["options"]))
    return PROMPT.format(length=len(series_of(doc)), question=doc["question"].strip(), options=options)


def doc_to_target(doc) -> str:
    return letters(len(doc["options"]))[list(doc["options"]).index(doc["answer"])]


def category_metric(category: str) -> str:
    known = category if category in CATEGORIES else "other"
    return "acc_" + re.sub(r"\W+", "_", known.lower())


CATEGORY_METRICS = [category_metric(c) for c in (*CATEGORIES, "other")]


def process_results(doc, results):
    texts, payload = split_response(results)
    predicted = parse_choice(texts[0] if texts else "", doc["options"])
    correct = float(predicted == doc_to_target(doc))
    per_category = {name: None for name in CATEGORY_METRICS}
    per_category[category_metric(doc["category"])] = correct
    return {"accuracy": correct, **per_category, "unparsed": int(predicted is None), **textdom_metrics(payload)}


def count(items) -> int:
    return int(sum(items))
