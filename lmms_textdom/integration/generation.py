"""A textdom model's answers as lmms-eval's ``GenerationResult``, so the sample log's ``token_counts`` is filled.

``_run_batch`` keeps answering ``[text, payload]`` (or the text alone without textdom), as tasks and
tests read it; the answers also carry their token counts, and ``generate_until`` hands each one to
lmms-eval wrapped in a ``GenerationResult``. Input tokens are the positions the language model saw
at prefill (padding left out): non-text tokens after the processor expanded them and after pruning
or replication, exactly the sequence the probe measures. Output tokens are the answer's rows
(``output_lengths``: up to and including the EOS or the token completing a stop string).
"""

from __future__ import annotations

from typing import Sequence

from lmms_eval.api.instance import GenerationResult, TokenCounts


class Answer(list):
    """``[text, payload]`` with its token counts."""

    token_counts: TokenCounts | None = None

    def strip(self) -> str:
        # lmms-eval's response cache (--use_cache) checks a result's text with .strip()
        return self[0].strip()


class Text(str):
    """An answer without payload (``textdom=false``), with its token counts."""

    token_counts: TokenCounts | None = None


def with_token_counts(outputs: Sequence, input_tokens: Sequence[int], output_tokens: Sequence[int]) -> list:
    """Each output (``[text, payload]`` or a text) with its counts attached."""
    counted = []
    for output, n_in, n_out in zip(outputs, input_tokens, output_tokens, strict=True):
        answer = Answer(output) if isinstance(output, list) else Text(output)
        answer.token_counts = TokenCounts(input_tokens=int(n_in), output_tokens=int(n_out))
        counted.append(answer)
    return counted


def generation_result(output) -> GenerationResult:
    """What ``generate_until`` hands lmms-eval for one answer (a plain run's logged answer already is one)."""
    if isinstance(output, GenerationResult):
        return output
    text = output if isinstance(output, list) else str(output)  # [text, payload] stays a list
    return GenerationResult(text, getattr(output, "token_counts", None))
