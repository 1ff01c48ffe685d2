"""What a plain run (``textdom=false``) logs of each answer so that ``lmms-textdom measure`` is exact.

The text alone loses two facts: the token ids (decoding is not always invertible) and how the
sequence ended (a stop string is cut from the text; an EOS token is dropped from it, so EOS and the
length limit look alike). lmms-eval 0.7.3 writes each request's ``token_counts`` (a ``TokenCounts``
from a ``GenerationResult``) into the sample log through its ``to_dict``; ``AnswerTokens`` adds the
generated ids (up to and including the token that ended the answer: its row counts) and the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lmms_eval.api.instance import GenerationResult, TokenCounts

#: keys of the logged ``token_counts`` entry that ``measure`` reads
OUTPUT_IDS, FINISH_REASON = "output_ids", "finish_reason"


@dataclass
class AnswerTokens(TokenCounts):
    output_ids: list[int] = field(default_factory=list)
    finish_reason: str | None = None  # core.probe.FINISH_*: eos, stop_string or length

    def to_dict(self) -> dict:
        return {**super().to_dict(), OUTPUT_IDS: list(self.output_ids), FINISH_REASON: self.finish_reason}


def logged_answer(text: str, prompt_tokens: int, output_ids: list[int], finish_reason: str) -> GenerationResult:
    """The answer as lmms-eval takes it: the text, and token counts that also carry ids and ending."""
    counts = AnswerTokens(prompt_tokens, len(output_ids), None, [int(t) for t in output_ids], finish_reason)
    return GenerationResult(text, counts)
