"""Reading the chosen option out of a free-text answer: the letter first, then TimeSeriesExam's own rule.

1. A leading option letter: ``B``, ``(B)``, ``B)``, ``B.``, ``B: ...`` (a letter followed by a space
   is not taken: "A downward trend" starts with an article, not option A).
2. A stated letter: ``answer is B``, ``Answer: (B)``, ``option B``.
3. TimeSeriesExam's "flexible" rule, which counts an answer as correct when ``"{letter}) {option}"``
   (lowercased) occurs in the response: the option whose text occurs that way, if exactly one does.
Anything else is unparsed (scored wrong and counted), never guessed.
"""

from __future__ import annotations

import re
import string
from typing import Sequence

LEADING = re.compile(r"^\W{0,3}?\(?([A-Z])(?:[).:,\]]|\n|$)")
STATED = re.compile(r"\b(?:answer|option|choice)\s*(?:is|:)?\s*[:\s]?\s*\(?([A-Z])\b(?![a-z])", re.IGNORECASE)


def letters(count: int) -> str:
    return string.ascii_uppercase[:count]


def parse_choice(response: str, options: Sequence[str]) -> str | None:
    valid = letters(len(options))
    text = response.strip()
    leading = LEADING.match(text)
    if leading and leading.group(1) in valid:
        return leading.group(1)
    stated = [m.group(1).upper() for m in STATED.finditer(text) if m.group(1).upper() in valid]
    if stated:
        return stated[0]
    lowered = text.lower()
    found = [letter for letter, option in zip(valid, options) if f"{letter}) {option}".lower() in lowered]
    return found[0] if len(found) == 1 else None
