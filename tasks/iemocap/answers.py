"""Free-text emotion answers mapped onto IEMOCAP's four classes (angry, happy + excited, neutral, sad).

Qwen2-Audio answers "Recognize the emotion with keywords in English:" with words such as "sad",
"sadness", "anger" or "joy" (its emotion training data used MELD's labels), or with a sentence.
An answer maps to a class when it names keywords of exactly that one class:

- words are matched whole and case-insensitively ("unhappy" is sad, it does not contain "happy");
- a keyword with a negation among the two words before it is ignored ("not angry, just calm" is neutral);
- an answer that names no class (empty, "frustrated", "surprised", "fear") or keywords of several
  classes ("happy or sad") is unmapped: it counts as wrong, and the task reports how many there were.

Frustration is deliberately not folded into anger: the standard 4-class set drops IEMOCAP's
frustrated utterances instead of merging them.
"""

from __future__ import annotations

import re

#: The classes in the order of the hub copy's ClassLabel (Zahra99/IEMOCAP_Audio: 0..3).
CLASSES = ("ang", "hap", "neu", "sad")

KEYWORDS = {
    "ang": (
        "ang", "angry", "anger", "angrily", "angered", "mad", "furious", "fury", "rage", "raging", "enraged",
        "irate", "irritated", "irritation", "annoyed", "annoyance", "hostile", "outraged",
    ),
    "hap": (
        "hap", "exc", "happy", "happiness", "happily", "excited", "excitement", "joy", "joyful", "joyous", "glad",
        "cheerful", "delighted", "elated", "pleased", "enthusiastic", "thrilled",
    ),
    "neu": ("neu", "neutral", "neutrality", "neutrally", "calm", "calmly", "calmness", "indifferent", "emotionless", "unemotional"),
    "sad": (
        "sad", "sadness", "sadly", "unhappy", "unhappiness", "sorrow", "sorrowful", "depressed", "melancholy",
        "melancholic", "gloomy", "grief", "grieving", "miserable", "heartbroken",
    ),
}  # fmt: skip
CLASS_OF = {word: label for label, words in KEYWORDS.items() for word in words}
NEGATIONS = frozenset({"not", "no", "never", "neither", "nor", "without", "hardly"})
NEGATION_WINDOW = 2
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


def _negates(word: str) -> bool:
    return word in NEGATIONS or word.endswith("n't")


def classes_named(answer: str) -> tuple[str, ...]:
    """The classes whose keywords the answer names, un-negated, in order of first mention."""
    words = _WORD.findall(answer.lower().replace("\u2019", "'"))
    named: list[str] = []
    for i, word in enumerate(words):
        label = CLASS_OF.get(word)
        if label is None or any(_negates(w) for w in words[max(0, i - NEGATION_WINDOW) : i]):
            continue
        if label not in named:
            named.append(label)
    return tuple(named)


def map_answer(answer: str) -> str | None:
    """The one class the answer names, or None (unmapped: no class, or several)."""
    named = classes_named(answer)
    return named[0] if len(named) == 1 else None
