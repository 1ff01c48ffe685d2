"""The metric hook: MDI/AEI next to a task's own metrics in lmms-eval's results table.

A textdom model answers each request with ``[text, payload]``, where ``payload`` is a JSON string
holding the sample's ``SampleStats`` and the run's settings; it reaches ``process_results`` as the
last element of ``results`` in tasks that report the textdom metrics, and no other task sees it
(``responses.py``). A task's ``process_results`` calls ``split_response`` to get the text
back and ``textdom_metrics`` for the metric values; ``with_textdom`` does both around any existing
``process_results``, so another task gains the metrics without copying its code. With any other
model the payload is absent and the textdom metrics are simply not reported.

A request that failed (``models/failures.py``) is answered ``["", failure payload]``: no stats, but
the task, doc id and exception. Its MDI/AEI are undefined (left out of every mean) and it counts in
``textdom_failed``, which a textdom task lists next to its metrics so the results table shows it.

No torch, no lmms-eval here: only the metric core.
"""

from __future__ import annotations

import functools
import json
import math
from typing import Any, Callable, Iterable, Sequence

from lmms_textdom.core.attention_maps import spread_values
from lmms_textdom.core.metrics import GROUPS, METRICS, aggregate, layer_groups, summarize
from lmms_textdom.core.segments import segment_values
from lmms_textdom.core.stats import SampleStats
from lmms_textdom.core.views import content_values, decay_values, step_dominance
from lmms_textdom.provenance import provenance

__all__ = [
    "METRIC_NAMES", "FAILED", "encode_payload", "encode_failure", "is_payload", "is_failure", "split_response",
    "textdom_metrics", "with_textdom", "mean_of_defined", "samples_measured", "samples_failed", "group_mean", "group_sum",
]

FORMAT = "lmms_textdom/1"
_PREFIX = json.dumps({"format": FORMAT})[:-1]
#: Metric keys a textdom task lists in its metric_list (plus DETAIL).
METRIC_NAMES = tuple(f"{m}_{g}" for m in METRICS for g in GROUPS)
#: Per-sample record in the sample log; aggregated to the number of samples measured.
DETAIL = "textdom"
#: the record's list of its settings keys that describe the one sample (frames, kept tokens, ...), not the run
PER_SAMPLE = "per_sample_settings"
#: 1 for a request that failed, else 0; aggregated to the number of failed samples.
FAILED = "textdom_failed"


#: Optional per-sample records of lmms_textdom.analysis: the key sample (model_arg key_stats) and
#: the knock-out's effect on the unmasked answer (knockout_score); and, from ``lmms-textdom measure``,
#: how the measured answer's tokens were obtained (``answer``); the per-position attention maps
#: (model_arg attention_maps, ``core/attention_maps.py``); copied into the sample log.
ANALYSIS_RECORDS = ("key_stats", "knockout", "answer", "attention_maps")


def encode_payload(stats: SampleStats, settings: dict[str, Any], per_sample: Iterable[str] = (), **analysis: dict | None) -> str:
    """``per_sample``: the keys of ``settings`` that describe this sample only (its frames, kept tokens, ...),
    which a report leaves out when it tells runs apart."""
    unknown = set(analysis) - set(ANALYSIS_RECORDS)
    if unknown:
        raise TypeError(f"unknown analysis records {sorted(unknown)}")
    payload = {"format": FORMAT, "stats": stats.to_dict(), "settings": settings, "provenance": provenance()}
    if per_sample:
        payload[PER_SAMPLE] = sorted(per_sample)
    payload.update({name: record for name, record in analysis.items() if record is not None})
    return json.dumps(payload)


def encode_failure(failure: dict[str, Any], settings: dict[str, Any]) -> str:
    """The payload of a request that failed: ``failure`` names its task, doc id and exception."""
    return json.dumps({"format": FORMAT, "failure": failure, "settings": settings})


def is_payload(value: Any) -> bool:
    return isinstance(value, str) and value.startswith(_PREFIX)


def is_failure(response: Any) -> bool:
    """Whether a model's ``[text, payload]`` response (bare, or in lmms-eval's ``GenerationResult``) is that of a failed request."""
    response = getattr(response, "text", response)
    if not (isinstance(response, (list, tuple)) and len(response) == 2 and is_payload(response[1])):
        return False
    return "failure" in json.loads(response[1])


def split_response(results: Sequence[Any]) -> tuple[list[Any], dict | None]:
    """``process_results``'s ``results`` without the textdom payload, and the payload (or None)."""
    results = list(results)
    if results and is_payload(results[-1]):
        return results[:-1], json.loads(results[-1])
    return results, None


def textdom_metrics(payload: dict | None) -> dict[str, Any]:
    """``{"mdi_early": float | None, ..., "textdom": detail, "textdom_failed": 0 or 1}``, or ``{}`` without a payload."""
    if payload is None:
        return {}
    if "failure" in payload:
        detail = {"failure": payload["failure"], "settings": payload.get("settings", {})}
        return {**{name: None for name in METRIC_NAMES}, DETAIL: detail, FAILED: 1}
    stats = SampleStats.from_dict(payload["stats"])
    summary = summarize(stats)
    values = summary.values()
    detail = {
        "stats": payload["stats"],
        "settings": payload.get("settings", {}),
        "values": dict(values),
        "layers": {m: [getattr(d, m) for d in summary.layers] for m in ("mdi", "aei", "aei_nontext")},
    }
    if stats.subclass_mass:
        detail["text_subclasses"] = text_subclass_shares(stats)
        detail["content"] = content_values(stats)
    if stats.stepwise is not None:
        detail["stepwise"] = stepwise_values(stats)
    if stats.segments is not None:
        detail["segments"] = segments_detail(stats)
    if "attention_maps" in payload:  # the spread of each group's non-text map, beside MDI
        detail["spread"] = spread_values(payload["attention_maps"])
    if "provenance" in payload:  # which code measured it (lmms_textdom.provenance)
        detail["provenance"] = payload["provenance"]
    if PER_SAMPLE in payload:
        detail[PER_SAMPLE] = payload[PER_SAMPLE]
    detail.update({name: payload[name] for name in ANALYSIS_RECORDS if name in payload})
    return {**values, DETAIL: detail, FAILED: 0}


def stepwise_values(stats: SampleStats) -> dict[str, Any]:
    """Per layer group, MDI and AEI per slot of the binned answer (head rows, then bins), and the decay."""
    per_group = {g: step_dominance(stats, g) for g in GROUPS}
    return {
        "slots": {"head": stats.stepwise.head, "bins": stats.stepwise.bins},
        **{m: {g: [_short(getattr(d, m)) for d in per_group[g]] for g in GROUPS} for m in METRICS},
        "decay": decay_values(stats),
    }


def segments_detail(stats: SampleStats) -> dict[str, Any]:
    """A thinking model's segments: their markers, MDI/AEI per segment and layer group, rows, whether the
    thinking was cut off, and the thinking segment's values per slot along the chain with its decay."""
    thinking = stats.segments.thinking
    return {
        "markers": list(stats.segments.markers),
        **segment_values(stats),
        "stepwise_thinking": stepwise_values(thinking) if thinking.stepwise is not None else None,
    }


def _short(value: float | None) -> float | None:
    return None if value is None else float(f"{value:.6g}")


def text_subclass_shares(stats: SampleStats) -> dict[str, dict]:
    """Per text subclass: its positions and, per layer group, its share of the text attention mass."""
    groups = layer_groups(stats.num_layers)
    out = {}
    for name, mass in stats.subclass_mass.items():
        shares = {}
        for group, layers in groups.items():
            text = stats.text_mass(list(layers))
            shares[group] = float(mass[list(layers)].sum()) / text if text > 0 else None
        out[name] = {"count": stats.subclass_counts[name], "share_of_text_mass": shares}
    return out


def with_textdom(process_results: Callable) -> Callable:
    """Wrap a task's ``process_results`` so that it also reports the textdom metrics."""

    @functools.wraps(process_results)
    def wrapped(doc, results, *args, **kwargs):
        texts, payload = split_response(results)
        out = dict(process_results(doc, texts, *args, **kwargs))
        out.update(textdom_metrics(payload))
        return out

    return wrapped


# ----- aggregations, referenced from task YAMLs with !function ---------------------------------


def mean_of_defined(items: Sequence[float | None]) -> float | None:
    """Mean of the per-sample values that are defined (lmms-eval prints None as N/A)."""
    return aggregate(items).value


def samples_measured(items: Sequence[dict]) -> int:
    """How many samples have a defined MDI in every layer group (a failed sample has none)."""
    return sum(1 for d in items if d and "values" in d and all(d["values"].get(f"mdi_{g}") is not None for g in GROUPS))


def samples_failed(items: Sequence[int]) -> int:
    """How many requests failed (``textdom_failed`` is 1 for each)."""
    return int(sum(items))


def group_mean(metrics: Sequence[float | None], sizes: Sequence[int], weight_by_size: bool = True) -> float | None:
    """Group value from subtask values (lmms-eval's group aggregation), skipping undefined subtasks."""
    pairs = [(m, s if weight_by_size else 1) for m, s in zip(metrics, sizes) if isinstance(m, (int, float))]
    pairs = [(m, w) for m, w in pairs if math.isfinite(m)]
    if not pairs:
        return None
    return math.fsum(m * w for m, w in pairs) / math.fsum(w for _, w in pairs)


def group_sum(metrics: Sequence[int | None], sizes: Sequence[int], weight_by_size: bool = True) -> int:
    return int(sum(m for m in metrics if isinstance(m, (int, float))))
