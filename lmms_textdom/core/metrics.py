"""MDI and AEI, exactly as defined in "When Language Overrules" (numpy and the standard library only).

For one measurement unit with text positions T and non-text positions O, let A_T and A_O be the
attention mass that the output rows put on T and on O (mass on earlier generated tokens dropped),
renormalised so that A_T + A_O = 1:

    MDI   = (A_T / |T|) / (A_O / |O|)
    AEI_T = P_T / Q_T            with P_T = A_T / (A_T + A_O),  Q_T = |T| / (|T| + |O|)
    AEI_O = (1 - P_T) / (1 - Q_T)                      (so MDI = AEI_T / AEI_O exactly)

A sample's unit for a layer group sums its masses over the group's layers; heads are summed, which
after renormalisation equals averaging them. "aei" below always means AEI_T, the paper's AEI.

Undefined cases (|T| = 0, |O| = 0, no output rows, A_O = 0) give ``None``: aggregates skip and count
them, and nothing here ever returns inf or NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

from lmms_textdom.core.stats import SampleStats

GROUPS = ("early", "middle", "late")
METRICS = ("mdi", "aei")
AGGREGATIONS = ("mean", "pooled", "geomean", "median")


def layer_groups(num_layers: int) -> dict[str, tuple[int, ...]]:
    """The paper's layer groups: the first two, the two middle and the last two layers.

    Middle is layers L//2 - 1 and L//2: for even L the two central layers (15 and 16 of 32); for
    odd L the central layer and the one before it (1 and 2 of 5). Models with fewer than four
    layers get overlapping groups, clipped to the layers that exist.
    """
    if num_layers < 1:
        raise ValueError(f"num_layers must be >= 1, got {num_layers}")
    wanted = {
        "early": (0, 1),
        "middle": (num_layers // 2 - 1, num_layers // 2),
        "late": (num_layers - 2, num_layers - 1),
    }
    return {g: tuple(sorted({i for i in idx if 0 <= i < num_layers})) for g, idx in wanted.items()}


@dataclass(frozen=True)
class Dominance:
    """MDI, AEI_T and AEI_O of one measurement unit; all ``None`` when undefined."""

    mdi: float | None
    aei: float | None
    aei_nontext: float | None

    @property
    def defined(self) -> bool:
        return self.mdi is not None


MISSING = Dominance(None, None, None)


def dominance(text_mass: float, nontext_mass: float, text_count: float, nontext_count: float) -> Dominance:
    """MDI / AEI_T / AEI_O from raw masses and token counts (masses need not be normalised)."""
    if text_count <= 0 or nontext_count <= 0 or nontext_mass <= 0 or text_mass < 0:
        return MISSING
    total_mass = text_mass + nontext_mass
    total_count = text_count + nontext_count
    # Each quantity from the raw values directly, so a tiny A_O cannot cancel to 0 in 1 - P_T.
    aei_text = (text_mass / total_mass) / (text_count / total_count)
    aei_nontext = (nontext_mass / total_mass) / (nontext_count / total_count)
    mdi = (text_mass / text_count) / (nontext_mass / nontext_count)
    if not all(math.isfinite(v) for v in (mdi, aei_text, aei_nontext)):
        return MISSING
    return Dominance(mdi, aei_text, aei_nontext)


def _layer_index(layers: Sequence[int] | None, num_layers: int) -> list[int]:
    if layers is None:
        return list(range(num_layers))
    bad = [i for i in layers if not 0 <= i < num_layers]
    if bad:
        raise ValueError(f"layer {bad[0]} out of range for a model with {num_layers} layers")
    return list(layers)


def sample_dominance(stats: SampleStats, layers: Sequence[int] | None = None) -> Dominance:
    """One sample, masses summed over ``layers`` (all layers when None)."""
    if stats.rows == 0:
        return MISSING
    idx = _layer_index(layers, stats.num_layers)
    return dominance(stats.text_mass(idx), stats.nontext_mass(idx), stats.text_count, stats.nontext_count)


@dataclass(frozen=True)
class SampleSummary:
    groups: dict[str, Dominance]
    layers: list[Dominance]

    def values(self) -> dict[str, float | None]:
        """Flat ``{"mdi_early": ..., "aei_late": ...}`` for the three groups."""
        return {f"{m}_{g}": getattr(self.groups[g], m) for m in METRICS for g in GROUPS}


def summarize(stats: SampleStats) -> SampleSummary:
    """Per layer group and per single layer values for one sample."""
    groups = {g: sample_dominance(stats, idx) for g, idx in layer_groups(stats.num_layers).items()}
    layers = [sample_dominance(stats, [i]) for i in range(stats.num_layers)]
    return SampleSummary(groups, layers)


def pooled_dominance(samples: Iterable[SampleStats], layers: Sequence[int] | None = None) -> tuple[Dominance, int, int]:
    """All output rows of all samples as one unit. Returns (value, samples used, samples skipped).

    A row of sample s spreads its attention over |T_s| text and |O_s| non-text tokens, so the
    per-token normalisers are the row-token exposures sum_s rows_s * |T_s| and sum_s rows_s * |O_s|.
    For a single sample this is exactly ``sample_dominance``. Samples whose own value is undefined
    are skipped and counted.
    """
    text_mass = nontext_mass = text_exposure = nontext_exposure = 0.0
    used = skipped = 0
    num_layers = None
    for s in samples:
        if num_layers is not None and s.num_layers != num_layers:
            raise ValueError(f"cannot pool samples from models with {num_layers} and {s.num_layers} layers")
        num_layers = s.num_layers
        if not sample_dominance(s, layers).defined:
            skipped += 1
            continue
        idx = _layer_index(layers, s.num_layers)
        used += 1
        text_mass += s.text_mass(idx)
        nontext_mass += s.nontext_mass(idx)
        text_exposure += s.rows * s.text_count
        nontext_exposure += s.rows * s.nontext_count
    if used == 0:
        return MISSING, 0, skipped
    return dominance(text_mass, nontext_mass, text_exposure, nontext_exposure), used, skipped


@dataclass(frozen=True)
class Aggregate:
    """An aggregate over samples: ``value`` is None when no sample had a defined value."""

    value: float | None
    n: int
    missing: int


def aggregate(values: Iterable[float | None], method: str = "mean") -> Aggregate:
    """Aggregate per-sample values, skipping and counting the missing ones.

    mean: exact (``math.fsum``), so the result does not depend on sample order or process count.
    geomean: exp of the mean log (0 if any value is 0). median: the middle value.
    """
    values = list(values)
    defined = sorted(float(v) for v in values if v is not None)
    missing = len(values) - len(defined)
    if not defined:
        return Aggregate(None, 0, missing)
    if method == "mean":
        value = math.fsum(defined) / len(defined)
    elif method == "geomean":
        value = 0.0 if defined[0] <= 0 else math.exp(math.fsum(math.log(v) for v in defined) / len(defined))
    elif method == "median":
        mid = len(defined) // 2
        value = defined[mid] if len(defined) % 2 else (defined[mid - 1] + defined[mid]) / 2
    else:
        raise ValueError(f"unknown aggregation {method!r} for per-sample values; use mean, geomean or median")
    return Aggregate(value, len(defined), missing)


def _check_aggregation(method: str) -> None:
    if method not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {method!r}; choose one of {', '.join(AGGREGATIONS)}")


def aggregate_layers(samples: Sequence[SampleStats], layers: Sequence[int], method: str = "mean") -> dict[str, Aggregate]:
    """``{"mdi": Aggregate, "aei": Aggregate}`` over samples, each sample's masses summed over ``layers``."""
    _check_aggregation(method)
    if method == "pooled":
        unit, used, skipped = pooled_dominance(samples, layers)
        return {m: Aggregate(getattr(unit, m), used, skipped) for m in METRICS}
    per_sample = [sample_dominance(s, layers) for s in samples]
    return {m: aggregate((getattr(d, m) for d in per_sample), method) for m in METRICS}


def aggregate_samples(samples: Sequence[SampleStats], method: str = "mean") -> dict[str, Aggregate]:
    """``{"mdi_early": Aggregate, ...}`` over samples of one model, by any of ``AGGREGATIONS``."""
    _check_aggregation(method)
    if not samples:
        return {f"{m}_{g}": Aggregate(None, 0, 0) for m in METRICS for g in GROUPS}
    by_group = {g: aggregate_layers(samples, idx, method) for g, idx in layer_groups(samples[0].num_layers).items()}
    return {f"{m}_{g}": by_group[g][m] for m in METRICS for g in GROUPS}
