"""The edited language-model input shared by every family that prunes or replicates non-text tokens.

A family computes the merged input embeddings itself (its tower's features placed at the placeholder
positions); this module re-indexes them with ``lmms_textdom.sequence`` and records what was kept.
"""

from __future__ import annotations

from typing import Sequence

import torch

from lmms_textdom.modality import PAD, PositionClasses
from lmms_textdom.models.base import Prepared
from lmms_textdom.sequence import gather_left_padded, plan_positions, unit_spans


def edited_prepared(
    embeds: torch.Tensor,
    attention_mask: torch.Tensor,
    classes: PositionClasses,
    unit_sizes: Sequence[int],
    repeat: int = 1,
    keep: Sequence[torch.Tensor | None] | None = None,
) -> Prepared:
    """``generate`` inputs (``inputs_embeds``) with each unit's kept tokens written ``repeat`` times.

    ``unit_sizes`` and ``keep`` (kept offsets per unit, None = all) follow the units in batch order.
    Each sample records ``nontext_original`` and ``nontext_kept`` (before replication).
    """
    keep = list(keep) if keep is not None else [None] * len(unit_sizes)
    positions, sample_settings, unit = [], [], 0
    for b, spans in enumerate(unit_spans(classes.ids, unit_sizes)):
        kept = keep[unit : unit + len(spans)]
        unit += len(spans)
        positions.append(plan_positions(classes.ids[b], spans, kept, repeat))
        sample_settings.append(
            {
                "nontext_original": sum(end - start for start, end in spans),
                "nontext_kept": sum(end - start if k is None else len(k) for (start, end), k in zip(spans, kept)),
            }
        )
    edited = gather_left_padded(
        positions,
        {"inputs_embeds": (embeds, 0.0), "attention_mask": (attention_mask, 0), "class_ids": (classes.ids, PAD)},
    )
    return Prepared(
        {"inputs_embeds": edited["inputs_embeds"], "attention_mask": edited["attention_mask"]},
        PositionClasses(classes.names, edited["class_ids"]),
        sample_settings,
    )
