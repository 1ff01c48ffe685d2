"""The token ids of a logged answer: the rows ``measure`` scores.

generate's probe records one row per generated token, the token that ended the answer included
(its EOS, or the token that completed a stop string). From a log:

- ``logged_ids``: our plain runs log those ids and the ending (``models/answer_log.py``); the rows
  are then exactly generate's.
- ``retokenized`` (only the text is logged) and ``forced`` (the text came from another model):
  the text is encoded with the measuring model's tokenizer. Two facts are not in the text:
  * EOS or length limit: an answer of fewer tokens than the run's ``max_new_tokens`` stopped by
    itself, so one EOS token is appended (its row is the one at the last text token); an answer
    that reaches ``max_new_tokens`` ran into the limit and gets no extra row.
  * a stop string (the task's ``until``) is cut from the logged text, its tokens are unknown: the
    answer is measured as if it had ended with EOS right after the text (one ending row instead of
    the stop string's tokens).
  Whether decode(encode(text)) gives the text back is recorded per sample (``round_trip``), and, where
  the limit is known, whether the text encodes to more tokens than the run could generate
  (``over_limit``: then its tokens are certainly not the generated ones). Neither proves the ids equal
  the generated ones: a lossy decode (byte fragments) can re-encode to other ids that round-trip.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from lmms_textdom.integration.sample_logs import FINISH_REASON, OUTPUT_IDS

LOGGED_IDS, RETOKENIZED, FORCED = "logged_ids", "retokenized", "forced"
#: the ending ``measure`` assumes for answers known as text only
ASSUMED_EOS, ASSUMED_LENGTH = "eos_assumed", "length_assumed"


@dataclass
class Answer:
    ids: list[int]
    finish_reason: str
    round_trip: bool | None = None  # retokenized text only
    over_limit: bool | None = None  # retokenized text, limit known

    def record(self) -> dict[str, Any]:
        out = {"tokens": len(self.ids), "finish_reason": self.finish_reason}
        for name in ("round_trip", "over_limit"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out


def logged_ids(sample: dict) -> list[int] | None:
    """The generated ids a plain textdom run logged for this sample, or None."""
    counts = sample.get("token_counts")
    entry = counts[0] if isinstance(counts, list) and counts else counts
    ids = entry.get(OUTPUT_IDS) if isinstance(entry, dict) else None
    if isinstance(ids, list) and ids and all(isinstance(t, int) for t in ids):
        return ids
    return None


def logged_text(sample: dict) -> str:
    """The model's answer text as logged: ``resps`` (before filters' effects) when kept, else ``filtered_resps``."""
    value = sample.get("resps", sample.get("filtered_resps"))
    while isinstance(value, list) and value:
        value = value[0]
    return value if isinstance(value, str) else ""


def from_log(sample: dict) -> Answer:
    ids = logged_ids(sample)
    counts = sample["token_counts"]
    entry = counts[0] if isinstance(counts, list) else counts
    return Answer(list(ids), str(entry.get(FINISH_REASON)))


def retokenize(text: str, tokenizer, eos_ids: Sequence[int], max_new_tokens: int | None) -> Answer:
    """The answer's ids from its text, with the EOS / length rule of the module docstring."""
    ids = list(tokenizer.encode(text, add_special_tokens=False)) if text else []
    round_trip = tokenizer.decode(ids, skip_special_tokens=True) == text
    over = None if max_new_tokens is None else len(ids) > max_new_tokens
    if max_new_tokens is not None and len(ids) >= max_new_tokens and ids:
        return Answer(ids, ASSUMED_LENGTH, round_trip, over)
    if not eos_ids:
        raise ValueError("the model defines no EOS token to end a retokenized answer with")
    return Answer([*ids, int(eos_ids[0])], ASSUMED_EOS, round_trip, over)
