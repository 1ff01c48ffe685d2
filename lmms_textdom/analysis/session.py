"""The analysis hooks one generate call runs under: a knock-out and/or the key sampler, or nothing."""

from __future__ import annotations

import contextlib
from typing import Iterator

from lmms_textdom.analysis.key_sampler import KeySampler
from lmms_textdom.analysis.knockout import KnockOut
from lmms_textdom.core.modality import PositionClasses


@contextlib.contextmanager
def analysis_session(model, classes: PositionClasses, knockout_layers, key_positions: int) -> Iterator[KeySampler | None]:
    """Knock ``knockout_layers`` out (none: no edit) and sample keys when ``key_positions`` > 0; yields the sampler."""
    with contextlib.ExitStack() as stack:
        if knockout_layers:
            stack.enter_context(KnockOut(model, knockout_layers, classes))
        yield stack.enter_context(KeySampler(model, classes, key_positions)) if key_positions else None
