"""MMBench-Video's scoring: the 0-3 judge prompt, reading the judge's reply, and the dimension ratings.

Everything here restates the benchmark's published protocol (VLMEvalKit, ``MMBench-Video``): the
judge's system prompt word for word (scores are only comparable under the same prompt), the user
message, the 26 L3 capabilities grouped into 9 coarse ones plus Perception / Reasoning / Overall,
and the two ways of counting a failed judgement: as 0 (``*_all``) or not at all (``*_valid``).
"""

from __future__ import annotations

import ast
import math
from typing import Iterable, Sequence

JUDGE_SYSTEM_PROMPT = (
    "\nAs an AI assistant, your task is to evaluate a candidate answer in comparison to a given correct answer.\n"
    "The question itself, the correct 'groundtruth' answer, and the candidate answer will be provided to you.\n"
    "Your assessment should range from 0 to 3, based solely on the semantic similarity between the groundtruth "
    "and the candidate answer, disregarding any grammatical differences.\n"
    "A rating of 0 suggests no similarity, implying the candidate answer is entirely incorrect.\n"
    "A rating of 1 suggests low similarity, meaning the candidate answer is largely incorrect.\n"
    "A rating of 2 suggests high similarity, meaning the candidate answer is largely correct.\n"
    "Lastly, a rating of 3 indicates complete similarity, which means the candidate answer is entirely correct.\n"
    "Your response should be a single integer from 0, 1, 2, or 3.\n"
)
FAILED = -1

#: coarse capability -> its L3 capabilities (the names used in the TSV's ``dimensions`` column)
COARSE = {
    "CP": ("Video Topic", "Video Emotion", "Video Scene", "Video Style"),
    "FP-S": ("OCR", "Object Recognition", "Attribute Recognition", "Event Recognition", "Human Motion", "Counting"),
    "FP-C": ("Spatial Relationship", "Human-object Interaction", "Human Interaction"),
    "HL": ("Hallucination",),
    "LR": ("Structuralized Image-Text Understanding", "Mathematical Calculation"),
    "AR": ("Physical Property", "Function Reasoning", "Identity Reasoning"),
    "RR": ("Natural Relation", "Physical Relation", "Social Relation"),
    "CSR": ("Common Sense Reasoning",),
    "TR": ("Counterfactual Reasoning", "Causal Reasoning", "Future Prediction"),
}
L3 = tuple(name for names in COARSE.values() for name in names)
SUPERGROUPS = {"Perception": ("CP", "FP-S", "FP-C", "HL"), "Reasoning": ("LR", "AR", "RR", "CSR", "TR")}
SUPERGROUPS["Overall"] = SUPERGROUPS["Perception"] + SUPERGROUPS["Reasoning"]
#: every coarse rating -> the L3 capabilities it covers; a question counts once per rating it touches
COARSE_RATINGS = {**COARSE, **{name: tuple(d for c in parts for d in COARSE[c]) for name, parts in SUPERGROUPS.items()}}


def judge_user_message(question: str, answer: str, prediction: str) -> str:
    return f"Question: {question}\nGroundtruth answer: {answer}\nCandidate answer: {prediction}\nYour response: "


#: cells pandas reads as missing by default (``read_csv`` / ``read_excel`` ``na_values``): VLMEvalKit
#: loads its prediction file with pandas and never sends such a prediction to the judge (score -1)
PANDAS_MISSING = frozenset(
    ("", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
     "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null")
)  # fmt: skip


def vlmevalkit_skips(prediction: str) -> bool:
    """Whether VLMEvalKit would read this prediction as missing and score it -1 without asking the judge."""
    return prediction in PANDAS_MISSING


def parse_score(reply: str | None) -> int:
    """The judge's score 0-3; anything but a lone integer 0-3 (or no reply) is a failure, -1.

    Stricter than VLMEvalKit, which ``eval``s the reply: it counts "4" or "10" as scores and
    crashes on "(2)" or "True".
    """
    text = (reply or "").strip()
    return int(text) if text in ("0", "1", "2", "3") else FAILED


def dimensions_of(value: str | Sequence[str]) -> list[str]:
    """The L3 capabilities of a question (the TSV stores a list literal); unknown names raise ValueError."""
    names = ast.literal_eval(value) if isinstance(value, str) else value
    if isinstance(names, str) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"dimensions must be a list of names, got {value!r}")
    unknown = [n for n in names if n not in L3]
    if unknown:
        raise ValueError(f"unknown MMBench-Video dimension(s) {unknown}; known: {', '.join(L3)}")
    return list(names)


def _mean(values: list[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


def ratings(scored: Iterable[tuple[Sequence[str], int]]) -> dict[str, dict[str, float | None]]:
    """``coarse_all``, ``coarse_valid``, ``fine_all``, ``fine_valid`` from (dimensions, score) pairs.

    ``*_all`` counts a failed judgement (-1) as 0, ``*_valid`` leaves it out; a rating nobody
    reached is None. ``coarse_all["Overall"]`` is the benchmark's headline number.
    """
    coarse: dict[str, list[int]] = {name: [] for name in COARSE_RATINGS}
    fine: dict[str, list[int]] = {name: [] for name in L3}
    for dimensions, score in scored:
        for name in dimensions:
            fine[name].append(score)
        for name, covered in COARSE_RATINGS.items():
            if any(d in covered for d in dimensions):
                coarse[name].append(score)

    def all_and_valid(lists):
        return (
            {k: _mean([max(s, 0) for s in v]) for k, v in lists.items()},
            {k: _mean([s for s in v if s != FAILED]) for k, v in lists.items()},
        )

    coarse_all, coarse_valid = all_and_valid(coarse)
    fine_all, fine_valid = all_and_valid(fine)
    return {"coarse_all": coarse_all, "coarse_valid": coarse_valid, "fine_all": fine_all, "fine_valid": fine_valid}
