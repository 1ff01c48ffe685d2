"""Which markers a checkpoint's thinking uses, and where they sit in an answer's tokens.

``think_markers`` (model_arg): ``auto`` (default) takes the markers from the checkpoint: a known pair
whose closing marker is a token of the tokenizer's added vocabulary (Qwen3-style ``</think>``), else
one its chat template names, else the family's own pair (``TextdomModel.THINK_MARKERS``: Kimi-VL's
thinking release writes ``◁think▷``/``◁/think▷`` as plain text, which neither its tokenizer nor its
template names). ``START:END`` sets them explicitly; ``none`` switches the split off.

Markers are found in the decoded answer text, not by token id: a marker may be one added token, or
several ordinary ones whose first or last token also carries neighbouring text (``>\\n``); every
token that holds a part of a marker counts as the marker's. A token's place in the text comes from
decoding prefixes of the answer (a binary search, so a few dozen decodes per answer).
"""

from __future__ import annotations

from typing import Sequence

from lmms_textdom.core.segments import SegmentRows, split_rows
from lmms_textdom.models.args import Arg, passes

AUTO, NONE = "auto", "none"
#: marker pairs of known thinking checkpoints, looked for in a checkpoint's tokenizer and chat template
KNOWN_MARKERS = (("<think>", "</think>"), ("◁think▷", "◁/think▷"))
#: prompt tokens read for an opening marker that the chat template put at the end of the prompt
PROMPT_TAIL = 8


def parse_markers(text: str) -> str | tuple[str, str] | None:
    """``auto``, None (``none``) or the (start, end) pair of ``START:END``; ValueError if malformed."""
    value = str(text).strip()
    if value.lower() in (AUTO, NONE):
        return AUTO if value.lower() == AUTO else None
    start, colon, end = value.partition(":")
    if not colon or ":" in end or not start.strip() or not end.strip() or start.strip() == end.strip():
        raise ValueError(f"expected START:END, two different non-empty markers, got {value!r}")
    return start.strip(), end.strip()



THINK_MARKERS = Arg(
    "think_markers", AUTO,
    "split a thinking model's answer into thinking and answer segments at these markers: auto = the checkpoint's "
    "(tokenizer, chat template, else the family's), START:END = these (e.g. <think>:</think>), none = no split",
    check=lambda text: passes(parse_markers, text), requirement="auto, none or START:END (two different non-empty markers, no ':' inside)",
)  # fmt: skip


def _template_text(tokenizer) -> str:
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):  # several named templates
        return "\n".join(map(str, template.values()))
    return template or ""


def checkpoint_markers(tokenizer, family: tuple[str, str]) -> tuple[str, str]:
    """The ``auto`` markers of a checkpoint (see the module docstring)."""
    added = set(tokenizer.get_added_vocab())
    for pair in KNOWN_MARKERS:
        if pair[1] in added:
            return pair
    template = _template_text(tokenizer)
    for pair in KNOWN_MARKERS:
        if pair[1] in template:
            return pair
    return family


class MarkerFinder:
    """Segment rows of answers from their token ids (``rows``), for one tokenizer and marker pair."""

    def __init__(self, tokenizer, markers: tuple[str, str]):
        self.tokenizer = tokenizer
        self.markers = (str(markers[0]), str(markers[1]))

    def _decode(self, ids: Sequence[int]) -> str:
        # special tokens kept (a marker may be one), no clean-up: a prefix decodes to a prefix of the text
        return self.tokenizer.decode(list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def _span(self, ids: list[int], text: str, lengths: dict[int, int], first: int, end: int) -> tuple[int, int]:
        """Tokens [a, b) that hold the characters first .. end - 1 of ``text``, the decoded ``ids``."""

        def length(k: int) -> int:
            if k not in lengths:
                lengths[k] = len(self._decode(ids[:k]))
            return lengths[k]

        low, high = 0, len(ids)  # a: the most tokens that end before the marker begins
        while low < high:
            mid = (low + high + 1) // 2
            low, high = (mid, high) if length(mid) <= first else (low, mid - 1)
        start = low
        low, high = start + 1, len(ids)  # b: the fewest tokens whose text reaches the marker's end
        while low < high:
            mid = (low + high) // 2
            low, high = (low, mid) if length(mid) >= end else (mid + 1, high)
        # a character split over tokens decodes as one replacement character until its last byte arrives
        while low < len(ids) and self._decode(ids[:low])[:end] != text[:end]:
            low += 1
        return start, low

    def opened_by(self, prompt_ids: Sequence[int] | None) -> bool:
        """Whether the prompt ends with the opening marker (a template that starts the thinking itself)."""
        if not prompt_ids:
            return False
        return self._decode(list(prompt_ids)[-PROMPT_TAIL:]).rstrip().endswith(self.markers[0])

    def rows(self, answer_ids: Sequence[int], prompt_ids: Sequence[int] | None = None) -> SegmentRows | None:
        """Where the answer's thinking and answer rows lie (row i produced ``answer_ids[i]``); None without markers.
        ``prompt_ids``: the prompt's ids, read for an opening marker at its end."""
        ids = [int(t) for t in answer_ids]
        text = self._decode(ids)
        start, end = self.markers
        lengths = {0: 0, len(ids): len(text)}
        opened = text.find(start)
        closed = text.find(end, 0 if opened < 0 else opened + len(start))
        opening = None if opened < 0 else self._span(ids, text, lengths, opened, opened + len(start))
        closing = None if closed < 0 else self._span(ids, text, lengths, closed, closed + len(end))
        return split_rows(len(ids), self.markers, opening, closing, opened_by_prompt=opening is None and self.opened_by(prompt_ids))


def marker_finder(setting: str, tokenizer, family: tuple[str, str]) -> MarkerFinder | None:
    """The finder the ``think_markers`` model_arg asks for (None: ``none``)."""
    parsed = parse_markers(setting)
    if parsed is None:
        return None
    return MarkerFinder(tokenizer, checkpoint_markers(tokenizer, family) if parsed == AUTO else parsed)
