"""Where the textdom payload travels between a model's answer and a task's scoring.

A textdom model answers ``[text, payload]``. Left in place, the payload would reach every task:
harmless to one reading ``results[0]``, wrong for one that reads all of ``results``, and fatal for a
task whose ``filter_list`` runs a regex over each response. So before a task's filters run, the
payload is taken off every response, which is then exactly what a stock model returns. Only a task
that reports textdom metrics (its aggregations name ``mdi_*``/``aei_*``: our tasks, a derived
``*_textdom`` task, a task wrapped with ``hook.with_textdom``) gets it back after filtering, as
``[filtered response, payload]``; its ``process_results`` then receives ``[..., payload]`` as before.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

from lmms_textdom.integration.hook import METRIC_NAMES, is_payload

_PAYLOAD = "textdom_payload"  # Instance attribute: the payload of the response the filters keep first


def wants_payload(task) -> bool:
    aggregations = task.aggregation() if hasattr(task, "aggregation") else {}
    return any(name in aggregations for name in METRIC_NAMES)


def detach(instance) -> None:
    """Strip the payload off each of the instance's responses; keep the first response's payload."""
    for i, response in enumerate(instance.resps):
        if isinstance(response, list) and len(response) >= 2 and is_payload(response[-1]):
            if not hasattr(instance, _PAYLOAD):
                setattr(instance, _PAYLOAD, response[-1])
            rest = response[:-1]
            instance.resps[i] = rest[0] if len(rest) == 1 else rest


def reattach(instance) -> None:
    payload = getattr(instance, _PAYLOAD, None)
    if payload is not None:
        for key, value in instance.filtered_resps.items():
            instance.filtered_resps[key] = [value, payload]


def split_filtered(results: Sequence[Any]) -> tuple[list[Any], dict | None]:
    """A derived task's ``results`` as the original task would get them, and the payload (or None)."""
    texts, payload = [], None
    for value in results:
        if isinstance(value, list) and len(value) == 2 and is_payload(value[1]):
            payload = payload or json.loads(value[1])
            value = value[0]
        texts.append(value)
    return texts, payload


def install() -> None:
    """Route the payload around every task's filters (once per process)."""
    from lmms_eval.api.task import ConfigurableTask

    original = ConfigurableTask.apply_filters
    if getattr(original, "_routes_textdom_payload", False):
        return

    def apply_filters(self):
        instances = list(getattr(self, "_instances", None) or [])
        for instance in instances:
            detach(instance)
        out = original(self)
        if wants_payload(self):
            for instance in instances:
                reattach(instance)
        return out

    apply_filters._routes_textdom_payload = True
    ConfigurableTask.apply_filters = apply_filters
