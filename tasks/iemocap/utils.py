"""IEMOCAP (4 classes) for lmms-eval: loading, prompt, scoring and the accuracy aggregations."""

from __future__ import annotations

import math
from collections import defaultdict

from loguru import logger

from lmms_textdom.media.audio import decode_audio
from lmms_textdom.integration.data import docs_loader
from lmms_textdom.integration.hook import split_response, textdom_metrics
from lmms_textdom.tasks.iemocap.answers import CLASSES, map_answer

REPO = "Zahra99/IEMOCAP_Audio"
#: The five recording sessions, evaluated together (the datasets library's "a+b" split syntax).
SESSIONS = "+".join(f"session{n}" for n in range(1, 6))

_load_sessions = docs_loader(REPO, None, SESSIONS)


def load_sessions(stub):
    """All five sessions with the audio column left undecoded: ``datasets`` 5.x would need torchcodec."""
    from datasets import Audio

    return _load_sessions(stub).cast_column("audio", Audio(decode=False))


def doc_to_visual(doc):
    samples, rate = decode_audio(doc["audio"].get("bytes"), doc["audio"].get("path"))
    return [{"array": samples, "sampling_rate": rate}]


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    return (lmms_eval_specific_kwargs or {})["prompt"]


def doc_to_target(doc) -> str:
    return CLASSES[doc["label"]]


def process_results(doc, results):
    texts, payload = split_response(results)
    predicted = map_answer(texts[0] if texts else "")
    gold = CLASSES[doc["label"]]
    return {
        "accuracy": float(predicted == gold),
        "unweighted_accuracy": {"gold": gold, "predicted": predicted},
        "unmapped": int(predicted is None),
        **textdom_metrics(payload),
    }


def unweighted_accuracy(items) -> float:
    """Mean per-class recall over the classes present (UA, the field's standard); logs each recall."""
    hits, totals = defaultdict(int), defaultdict(int)
    for item in items:
        totals[item["gold"]] += 1
        hits[item["gold"]] += item["predicted"] == item["gold"]
    if not totals:
        return math.nan
    recalls = {label: hits[label] / totals[label] for label in CLASSES if totals[label]}
    for label, recall in recalls.items():
        logger.info(f"IEMOCAP recall {label}: {recall:.3f} ({totals[label]} utterances)")
    return math.fsum(recalls.values()) / len(recalls)


def count(items) -> int:
    """How many samples had the property (here: answers that map to no single class)."""
    return int(sum(items))
