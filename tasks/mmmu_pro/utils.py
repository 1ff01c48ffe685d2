"""MMMU-Pro with the official prompts and scoring, plus MDI/AEI through the textdom hook.

Prompts follow mmmu-pro/infer: standard = question, the lettered options and the prompt on
separate lines, with each "<image N>" written as "[image]" and the images passed in order of
reference (repeats included); vision = the prompt alone with the screenshot. Both configs are
scored by the official parser against the ``options`` column (lmms-eval 0.7.3 compares the raw
vision response to the letter instead, which marks nearly every answer wrong).
"""

from __future__ import annotations

import ast
import math
import re
from collections import defaultdict

from loguru import logger

from lmms_textdom.integration.data import docs_loader
from lmms_textdom.integration.hook import split_response, textdom_metrics
from lmms_textdom.tasks.mmmu_pro.parsing import option_letters, parse_choice

REPO = "MMMU/MMMU_Pro"
IMAGE_REF = re.compile(r"<image\s+(\d+)>")

load_standard_10 = docs_loader(REPO, "standard (10 options)")
load_standard_4 = docs_loader(REPO, "standard (4 options)")
load_vision = docs_loader(REPO, "vision")


def options_of(doc) -> list[str]:
    return ast.literal_eval(str(doc["options"]))


def _standard_prompt(doc, prompt: str) -> str:
    lines = "\n".join(f"{letter}. {text}" for letter, text in zip(option_letters(options_of(doc)), options_of(doc)))
    return f"{doc['question']}\n{lines}\n{prompt}"


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    prompt = (lmms_eval_specific_kwargs or {})["prompt"]
    if "question" not in doc:  # vision config: question and options are in the image
        return prompt
    return IMAGE_REF.sub("[image]", _standard_prompt(doc, prompt))


def doc_to_visual(doc):
    if "question" not in doc:
        return [doc["image"].convert("RGB")]
    order = [int(n) for n in IMAGE_REF.findall(_standard_prompt(doc, ""))]
    return [doc[f"image_{n}"].convert("RGB") for n in order if doc.get(f"image_{n}") is not None]


def process_results(doc, results):
    texts, payload = split_response(results)
    response = texts[0] if texts else ""
    prediction = parse_choice(response, options_of(doc), seed=str(doc["id"]))
    score = {
        "id": doc["id"],
        "subject": doc.get("subject"),
        "answer": doc["answer"],
        "parsed_pred": prediction,
        "score": float(prediction == doc["answer"]),
    }
    return {"mmmu_acc": score, **textdom_metrics(payload)}


def aggregate_accuracy(items) -> float:
    """Instance-level accuracy; logs it per subject."""
    if not items:
        return math.nan
    by_subject = defaultdict(list)
    for item in items:
        by_subject[item["subject"]].append(item["score"])
    for subject in sorted(by_subject, key=str):
        scores = by_subject[subject]
        logger.info(f"MMMU-Pro {subject}: {sum(scores) / len(scores):.3f} ({len(scores)} questions)")
    return math.fsum(item["score"] for item in items) / len(items)
