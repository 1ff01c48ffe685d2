"""MMMU-Pro answer parsing with the official evaluation's rules (mmmu-pro/evaluate.py).

1. After the last "Answer:", if exactly one option letter occurs, that letter is the answer.
2. Otherwise the MMMU heuristics on the whole response (outer punctuation stripped one character
   kind at a time, in the order , . ! ? ; : ' as the official loop does, so "A,." keeps its comma;
   then padded with spaces): "(X)", then "X " (letter and space), then "X."; if none and the response has more than
   5 words, options whose text occurs in it. Several candidates: the one occurring last.
3. No candidate: a random letter. The official code draws unseeded; we seed with the question id,
   so runs repeat and the guess does not depend on thread or process scheduling.
"""

from __future__ import annotations

import random
import string
from typing import Sequence

# Stripped one after the other, in this order, exactly as the official loop of str.strip(char) calls.
_STRIP_IN_ORDER = (",", ".", "!", "?", ";", ":", "'")


def option_letters(options: Sequence[str]) -> list[str]:
    return list(string.ascii_uppercase[: len(options)])


def _after_last_answer_tag(response: str, letters: Sequence[str]) -> str | None:
    at = response.rfind("Answer:")
    if at == -1:
        return None
    tail = response[at + len("Answer:") :].strip()
    found = [letter for letter in letters if letter in tail]
    return found[0] if len(found) == 1 else None


def _last_occurring(candidates: list[str], positions: dict[str, int]) -> str:
    return max(candidates, key=lambda c: (positions[c], -candidates.index(c)))


def parse_choice(response: str, options: Sequence[str], seed: str) -> str:
    """The option letter a free-text ``response`` chooses among ``options``."""
    letters = option_letters(options)
    tagged = _after_last_answer_tag(response, letters)
    if tagged is not None:
        return tagged

    stripped = response
    for char in _STRIP_IN_ORDER:
        stripped = stripped.strip(char)
    padded = " " + stripped + " "
    bracketed = [c for c in letters if f"({c})" in padded]
    if bracketed:
        return _last_occurring(bracketed, {c: padded.rfind(f"({c})") for c in bracketed})
    spaced = [c for c in letters if f"{c} " in padded]
    dotted = [] if spaced else [c for c in letters if f"{c}." in padded]
    by_letter = spaced or dotted
    if by_letter:
        # the official code ranks letter candidates by the position of " X " (-1 when absent)
        return _last_occurring(by_letter, {c: padded.rfind(f" {c} ") for c in by_letter})
    if len(padded.split()) > 5:
        lowered = padded.lower()
        by_text = [c for c, text in zip(letters, options) if str(text).lower() in lowered]
        if by_text:
            return _last_occurring(by_text, {c: lowered.rfind(str(options[letters.index(c)]).lower()) for c in by_text})
    return random.Random(seed).choice(letters)
