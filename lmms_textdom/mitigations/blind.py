"""``blind=true``: each request without its non-text input, placeholders included, the prompt otherwise
the same. The family then builds its own text-only prompt (no image, video, audio, series or graph
slots), so accuracy shows how much of the task the text alone answers, and MDI/AEI are undefined
(there are no non-text positions).

Most families put their placeholders into the prompt themselves, one per visual; a family whose task
text carries them (ChatTS's ``<ts><ts/>``, GraphGPT's ``<graph>``) names them in
``TextdomModel.CONTEXT_PLACEHOLDERS`` and they are cut from the text here.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence


def blind_request(request, placeholders: Sequence[str] = ()):
    """``request`` (a ``models.base.Request``) without visuals and without ``placeholders`` in its text."""
    context = request.context
    for marker in placeholders:
        context = context.replace(marker, "")
    return replace(request, context=context, visuals=[])
