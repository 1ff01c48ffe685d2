"""``attention_maps`` on every family: each position's map value is the attention eager attention gives it,
the maps sum to the stats' masses, the items place every position, and the measure route gives the same maps."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lmms_textdom.core.attention_maps import AttentionMaps
from lmms_textdom.core.metrics import layer_groups
from lmms_textdom.core.stats import SampleStats
from lmms_textdom.models.base import Request
from tests.oracle import eager_position_rows
from tests.test_measure_families import EDITS, generated_and_plain
from tests.test_text_parts import ADAPTERS, checkpoints, family_requests  # noqa: F401 (fixture)

NEW_TOKENS = 4
CASES = [(family, {}) for family in ADAPTERS] + [(family, edits) for family, edits in EDITS.items()] + [
    ("llava_next", {"prune_ratio": 0.5}), ("kimi_vl", {"prune_ratio": 0.5, "nontext_repeat": 2}), ("videollama3", {"prune_ratio": 0.5}),
]  # fmt: skip
KINDS = {"image": "image", "video": "video", "audio": "audio", "time_series": "time_series", "graph": "graph"}


def records(payloads: list[str]) -> list[tuple[SampleStats, AttentionMaps, dict]]:
    out = []
    for payload in payloads:
        data = json.loads(payload)
        out.append((SampleStats.from_dict(data["stats"]), AttentionMaps.from_dict(data["attention_maps"]), data["attention_maps"]))
    return out


def assert_identity(stats: SampleStats, maps: AttentionMaps) -> None:
    for group, layers in layer_groups(stats.num_layers).items():
        for c, name in enumerate(stats.classes[1:], start=1):
            mass = stats.mass[list(layers), c].sum()
            assert maps.class_sums(group)[name] == pytest.approx(mass, rel=1e-5, abs=1e-6), (group, name)


def assert_quarters_match_stepwise(stats: SampleStats, maps: AttentionMaps) -> None:
    steps = stats.stepwise
    quarter = steps.bins // 4
    slots = {"first": range(steps.head, steps.head + quarter), "last": range(steps.head + steps.bins - quarter, steps.head + steps.bins)}
    for name, part in maps.quarters.items():
        assert part["rows"] == int(steps.rows[list(slots[name])].sum())
        for g, group in enumerate(steps.groups):
            for cls in stats.classes[1:]:
                expected = steps.mass[g][list(slots[name])][:, steps.column(cls)].sum()
                assert float(part["groups"][group][cls].astype(np.float64).sum()) == pytest.approx(expected, rel=1e-5, abs=1e-5)


def assert_items_place_every_position(maps: AttentionMaps, request: Request) -> None:
    items = maps.items
    assert len(items) == len(request.visuals), "one item per visual"
    for name in maps.classes:
        mine = [item for item in items if item["class"] == name]
        assert sum(item["positions"] for item in mine) == maps.positions(name)
        assert [s for item in mine for s in item.get("parts", [item["positions"]]) if s] == list(maps.parts[name])
    for item in items:
        assert item["kind"] == KINDS[item["class"]]
        if "offsets" in item:
            assert len(item["offsets"]) == item["positions"] and min(item["offsets"], default=0) >= 0
        if item["kind"] == "image":
            assert item["thumbnail"].startswith("data:image/jpeg;base64,") and item["views"]
            cells = sum(v["rows"] * (v["cols"] + v.get("newline", False)) for v in item["views"])
            assert max(item.get("offsets", [item["positions"] - 1]), default=0) < cells
        if item["kind"] == "video":
            assert item["frames"] and any(f["thumbnail"] for f in item["frames"])
        if item["kind"] == "audio":
            assert item["seconds"] > 0 and item["envelope"]
        if item["kind"] == "time_series":
            assert len(item["values"]) == -(-item["length"] // item["step"]) and item["patch_size"] >= 1
        if item["kind"] == "graph":
            assert max(item.get("offsets", [item["positions"] - 1])) < len(item["node_ids"])


@pytest.mark.parametrize("family,edits", CASES, ids=[f"{f}{'-' + '-'.join(e) if e else ''}" for f, e in CASES])
def test_maps_equal_eager_attention_and_the_stats_masses(family, edits, checkpoints, tiny_videos):  # noqa: F811
    adapter = ADAPTERS[family](pretrained=str(checkpoints(family)), device="cpu", batch_size=2, attention_maps="steps", **edits)
    requests = [Request(r.context, r.visuals, r.doc, {"max_new_tokens": NEW_TOKENS}) for r in family_requests(family, tiny_videos)]
    payloads = [payload for _, payload in adapter._run_batch(requests)]
    found = records(payloads)
    prepared = adapter.prepare(requests)
    inputs = adapter._to_device(prepared.inputs)
    lengths = [stats.rows for stats, _, _ in found]
    _, rows = eager_position_rows(adapter.model, inputs, prepared.classes.length, lengths, NEW_TOKENS)
    for b, ((stats, maps, raw), per_row) in enumerate(zip(found, rows)):
        assert json.loads(payloads[b])["settings"]["attention_maps"] == "steps"
        assert_identity(stats, maps)
        assert_quarters_match_stepwise(stats, maps)
        assert_items_place_every_position(maps, requests[b])
        ids = prepared.classes.ids[b].cpu().numpy()
        for group, layers in maps.layers.items():
            summed = per_row[:, list(layers)].sum(axis=(0, 1))
            for c, name in enumerate(prepared.classes.names[1:], start=1):
                assert maps.pool[name] == 1
                np.testing.assert_allclose(maps.groups[group][name], summed[ids == c], atol=1e-5, rtol=0, err_msg=f"{group}/{name}")
        assert set(json.loads(json.dumps(raw))) >= {"groups", "parts", "pool", "items", "quarters"}
    if edits:
        return
    # the measure route: the same answers teacher-forced give the same maps
    adapter.args["attention_maps"] = "true"
    _, answers = generated_and_plain(adapter, requests)
    measured = records(adapter.measure_batch(requests, answers, {}, [{"tokens": 0}] * len(requests)))
    for (_, generated, _), (_, forced, raw) in zip(found, measured):
        assert "quarters" not in raw
        for group in generated.groups:
            for name in generated.classes:
                np.testing.assert_allclose(forced.groups[group][name], generated.groups[group][name], atol=1e-5, rtol=1e-5)
