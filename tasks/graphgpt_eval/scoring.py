"""Answer scoring for the GraphGPT evaluation instructions (pure Python).

arxiv: the distinct ``cs.XX`` strings of the response in order of first appearance, those that name
an arXiv CS category kept, and the answer is correct when the gold category is among the first
three, as GraphGPT's ``cal_metric_arxiv.py``; the first one is the prediction for macro-F1.
cora / pubmed (no upstream script): every class name is searched case-insensitively; the one that
starts earliest wins, the longest on ties (names overlap as substrings).
link prediction: the first standalone "yes" or "no" of the response.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Iterable, Sequence

#: the 40 arXiv CS categories of ogbn-arxiv (OGB's labelidx2arxivcategeory.csv)
ARXIV_CATEGORIES = tuple(
    f"cs.{c}"
    for c in "AI AR CC CE CG CL CR CV CY DB DC DL DM DS ET FL GL GR GT HC IR IT LG LO MA MM MS NA NE NI OH OS PF PL RO SC SD SE SI SY".split()
)
PUBMED_CLASSES = ("Experimentally induced diabetes", "Type 1 diabetes", "Type 2 diabetes")
ARXIV_PATTERN = re.compile(r"cs\.[A-Z]{2}")
YES_NO = re.compile(r"\b(yes|no)\b", re.IGNORECASE)
TOP_K = 3


def arxiv_matches(response: str) -> list[str]:
    """Distinct arXiv CS categories named in ``response``, in order of first appearance."""
    seen = dict.fromkeys(ARXIV_PATTERN.findall(response))
    return [c for c in seen if c in ARXIV_CATEGORIES]


def arxiv_gold(answer: str) -> str | None:
    """The gold category of an arxiv item: the first ``cs.XX`` of its reference answer."""
    found = arxiv_matches(answer)
    return found[0] if found else None


def first_class(response: str, names: Iterable[str]) -> str | None:
    """The class name found earliest in ``response`` (case-insensitive), the longest on ties; None if none."""
    text = response.lower()
    best = None
    for name in names:
        at = text.find(name.lower())
        if at >= 0 and (best is None or (at, -len(name)) < (best[0], -len(best[1]))):
            best = (at, name)
    return best[1] if best else None


def yes_no(response: str) -> str | None:
    found = YES_NO.search(response)
    return found.group(1).lower() if found else None


def macro_f1(pairs: Sequence[tuple[str | None, str]]) -> float:
    """Macro-F1 over the gold classes present: (predicted, gold) pairs; a missing or other prediction is a miss."""
    if not pairs:
        return math.nan
    gold = Counter(g for _, g in pairs)
    predicted = Counter(p for p, _ in pairs)
    hits = Counter(g for p, g in pairs if p == g)
    scores = [2 * hits[c] / (gold[c] + predicted[c]) for c in gold]
    return math.fsum(scores) / len(scores)
