"""Two views beyond the paper's headline numbers (numpy and the metric core only).

- **Along the answer**: MDI/AEI per slot of ``SampleStats.stepwise`` (``core/stepwise.py``) and the
  ``decay`` ratio, late quarter of the answer over early quarter.
- **Content**: the paper's formulas with T = the task's own text only (sub-class ``task``): its mass
  and its position count; O unchanged (every non-text class). Sink, template and family-specific
  text drop out of both sides. Undefined (None) without a ``task`` sub-class or with no task position.

Both use ``metrics.dominance``, so the same undefined cases give None.
"""

from __future__ import annotations

from typing import Sequence

from lmms_textdom.core.metrics import GROUPS, MISSING, Dominance, dominance, layer_groups
from lmms_textdom.core.stats import TEXT, SampleStats

#: The task's own text, as ``core/text_parts.py`` names it (not imported: that module needs torch).
TASK = "task"


def _slot_dominance(stats: SampleStats, group: str, slots: Sequence[int]) -> Dominance:
    steps = stats.stepwise
    g = list(steps.groups).index(group)
    if int(steps.rows[list(slots)].sum()) == 0:
        return MISSING
    mass = steps.mass[g][list(slots)].sum(axis=0)
    nontext = sum(mass[steps.column(c)] for c in stats.classes[1:])
    return dominance(float(mass[steps.column(TEXT)]), float(nontext), stats.text_count, stats.nontext_count)


def step_dominance(stats: SampleStats, group: str) -> list[Dominance]:
    """One ``Dominance`` per slot (head rows, then bins); None-valued where a slot holds no row."""
    if stats.stepwise is None:
        return []
    slots = stats.stepwise.head + stats.stepwise.bins
    return [_slot_dominance(stats, group, [s]) for s in range(slots)]


def quarter_slots(stats: SampleStats) -> tuple[list[int], list[int]]:
    """Slots of the first and the last quarter of the relative bins."""
    head, bins = stats.stepwise.head, stats.stepwise.bins
    quarter = max(1, bins // 4)
    return list(range(head, head + quarter)), list(range(head + bins - quarter, head + bins))


def decay(stats: SampleStats, group: str) -> float | None:
    """MDI of the answer's last quarter over MDI of its first quarter (>1: text dominance grows)."""
    if stats.stepwise is None:
        return None
    early, late = quarter_slots(stats)
    first, last = _slot_dominance(stats, group, early), _slot_dominance(stats, group, late)
    if not first.defined or not last.defined or first.mdi <= 0:
        return None
    return last.mdi / first.mdi


def decay_values(stats: SampleStats) -> dict[str, float | None]:
    """``{"decay_early": ..., "decay_middle": ..., "decay_late": ...}``."""
    return {f"decay_{g}": decay(stats, g) for g in GROUPS}


def content_dominance(stats: SampleStats, layers: Sequence[int]) -> Dominance:
    """The content variant over ``layers``: T = the task sub-class."""
    if stats.rows == 0 or TASK not in stats.subclass_mass:
        return MISSING
    count = stats.subclass_counts[TASK]
    if count == 0:
        return MISSING
    idx = list(layers)
    return dominance(float(stats.subclass_mass[TASK][idx].sum()), stats.nontext_mass(idx), count, stats.nontext_count)


def content_values(stats: SampleStats) -> dict[str, float | None]:
    """``{"content_mdi_early": ..., "content_aei_late": ...}`` (all None when undefined)."""
    out = {}
    groups = layer_groups(stats.num_layers)
    for g in GROUPS:
        d = content_dominance(stats, groups[g])
        out[f"content_mdi_{g}"] = d.mdi
        out[f"content_aei_{g}"] = d.aei
    return out

