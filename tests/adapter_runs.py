"""Running a textdom adapter on requests in-process, as lmms-eval would, and reading its payloads."""

from __future__ import annotations

import json

import torch


def run_adapter(adapter_class, checkpoint, requests, **model_args):
    """(adapter, [(text, payload dict)]) for one batch of ``requests`` on CPU."""
    adapter = adapter_class(pretrained=str(checkpoint), device="cpu", **model_args)
    return adapter, [(text, json.loads(payload)) for text, payload in adapter._run_batch(requests)]


def assert_batch_equals_single(adapter_class, checkpoint, requests, **model_args):
    """Each request alone gives the text and attention masses it got inside the padded batch."""
    _, batched = run_adapter(adapter_class, checkpoint, requests, **model_args)
    for i, request in enumerate(requests):
        _, (single,) = run_adapter(adapter_class, checkpoint, [request], **model_args)
        assert single[0] == batched[i][0]
        expected = torch.tensor(batched[i][1]["stats"]["mass"])
        torch.testing.assert_close(torch.tensor(single[1]["stats"]["mass"]), expected, atol=1e-5, rtol=1e-5)
