"""The analysis hooks one generate call runs under: a knock-out, the attention switches and/or the key sampler, or nothing.

It composes ``analysis/`` and ``mitigations/`` for the adapters, so it sits above both (``mitigations`` uses ``analysis``)."""

from __future__ import annotations

import contextlib
from typing import Iterator

from lmms_textdom.analysis.key_sampler import KeySampler
from lmms_textdom.analysis.knockout import KnockOut
from lmms_textdom.core.modality import PositionClasses
from lmms_textdom.mitigations.attention import AttentionSwitches


@contextlib.contextmanager
def analysis_session(model, classes: PositionClasses, knockout_layers, key_positions: int, switches=None) -> Iterator[KeySampler | None]:
    """Knock ``knockout_layers`` out (none: no edit), apply the attention ``switches`` (``mitigations.settings.Switches``;
    None or neutral: no edit) and sample keys when ``key_positions`` > 0; yields the sampler."""
    with contextlib.ExitStack() as stack:
        if knockout_layers:
            stack.enter_context(KnockOut(model, knockout_layers, classes))
        if switches is not None and switches.edits_attention:  # after the knock-out: scale chains onto its mask edit
            stack.enter_context(AttentionSwitches(model, switches, classes))
        yield stack.enter_context(KeySampler(model, classes, key_positions)) if key_positions else None
