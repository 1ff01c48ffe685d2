"""chatts_textdom on both time-series tasks through the real lmms-eval CLI, plain (x1) and replicated (x5)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from lmms_textdom.integration.hook import METRIC_NAMES
from lmms_textdom.tasks.chatts_eval.scoring import score_item
from lmms_textdom.tasks.timeseries_reasoning.parsing import parse_choice
from lmms_textdom.tasks.timeseries_reasoning.utils import CATEGORY_METRICS, category_metric
from tests.lmms_runs import results_of, run_cli_ok, samples_of

TASKS = ("timeseries_reasoning_textdom", "chatts_eval_textdom")
PATCH = 4  # the tiny 0801 checkpoint's patch size


def run(folder, data_root, output, extra_args: str = ""):
    return run_cli_ok(
        "chatts_textdom", f"pretrained={folder}{extra_args}", ",".join(TASKS), output, data_root,
        "--batch_size", "2", "--gen_kwargs", "max_new_tokens=6",
    )  # fmt: skip


@pytest.fixture(scope="module")
def plain_run(tiny_chatts_dirs, timeseries_data_root, tmp_path_factory):
    return run(tiny_chatts_dirs["0801"], timeseries_data_root, tmp_path_factory.mktemp("ts_x1"))


@pytest.fixture(scope="module")
def repeated_run(tiny_chatts_dirs, timeseries_data_root, tmp_path_factory):
    return run(tiny_chatts_dirs["0801"], timeseries_data_root, tmp_path_factory.mktemp("ts_x5"), ",nontext_repeat=5")


def by_doc(output, task) -> dict[int, dict]:
    return samples_of(output, task, key=lambda row: int(row["doc_id"]))


@pytest.fixture(scope="module")
def docs(timeseries_data_root):
    """Each task's documents as the runs loaded them (the sample log keeps only ids and the prompt)."""
    from lmms_textdom.tasks.chatts_eval.utils import _load as load_chatts
    from lmms_textdom.tasks.timeseries_reasoning.utils import _load as load_exam

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LMMS_TEXTDOM_DATA", str(timeseries_data_root))
        return {"timeseries_reasoning_textdom": list(load_exam()), "chatts_eval_textdom": list(load_chatts())}


@pytest.mark.parametrize("which", ["plain_run", "repeated_run"])
def test_timeseries_reasoning_reports_accuracy_per_category_and_textdom(request, which, docs):
    output = request.getfixturevalue(which)
    cells = results_of(output)["results"]["timeseries_reasoning_textdom"]
    for metric in (*METRIC_NAMES, "accuracy"):
        assert isinstance(cells[f"{metric},none"], float), metric
    logged = by_doc(output, "timeseries_reasoning_textdom")
    samples = list(logged.values())
    assert len(samples) == 6 and cells["textdom,none"] == 6
    for doc_id, sample in logged.items():
        doc = docs["timeseries_reasoning_textdom"][doc_id]
        predicted = parse_choice(sample["filtered_resps"][0], doc["options"])
        assert sample["target"] == "ABC"[doc["options"].index(doc["answer"])]
        assert sample["accuracy"] == float(predicted == sample["target"])
        assert sample[category_metric(doc["category"])] == sample["accuracy"]
    assert cells["accuracy,none"] == pytest.approx(np.mean([s["accuracy"] for s in samples]))
    for name in CATEGORY_METRICS:
        values = [s[name] for s in samples if s[name] is not None]
        if values:
            assert cells[f"{name},none"] == pytest.approx(np.mean(values))
    assert cells["unparsed,none"] == sum(s["unparsed"] for s in samples)


@pytest.mark.parametrize("which", ["plain_run", "repeated_run"])
def test_chatts_eval_scores_by_upstream_rules_and_counts_ragas_items(request, which, docs):
    output = request.getfixturevalue(which)
    cells = results_of(output)["results"]["chatts_eval_textdom"]
    for metric in METRIC_NAMES:
        assert isinstance(cells[f"{metric},none"], float), metric
    logged = by_doc(output, "chatts_eval_textdom")
    samples = list(logged.values())
    assert len(samples) == 9 and cells["textdom,none"] == 9
    pooled = {"categorical": [], "numerical": [], "reason": []}
    for doc_id, sample in logged.items():
        doc = docs["chatts_eval_textdom"][doc_id]
        scores, _ = score_item(sample["filtered_resps"][0], *(json.loads(doc[k]) for k in ("attributes", "ability_types", "cols")))
        assert sample["not_scored"] == scores.unscored
        for name in pooled:
            pooled[name] += getattr(scores, name)
    for name, values in pooled.items():
        assert cells[f"{name},none"] == pytest.approx(np.mean(values))
    assert cells["not_scored,none"] == sum(s["not_scored"] for s in samples) >= 1  # the free-text deductive item


@pytest.mark.parametrize("task", TASKS)
def test_replication_multiplies_time_series_positions_only(plain_run, repeated_run, task, docs):
    plain, repeated = by_doc(plain_run, task), by_doc(repeated_run, task)
    assert plain.keys() == repeated.keys()
    for doc_id, row in plain.items():
        p, r = row["textdom"], repeated[doc_id]["textdom"]
        doc = docs[task][doc_id]
        if task == "timeseries_reasoning_textdom":
            lengths = [len(doc["ts1"])]
        else:
            lengths = [len(s) for s in json.loads(doc["timeseries"])]
        blocks = [math.ceil(n / PATCH) for n in lengths]
        text, ts = p["stats"]["counts"]
        assert ts == sum(blocks) and p["settings"]["ts_patch_counts"] == blocks
        assert r["stats"]["counts"] == [text, 5 * ts], doc_id
        assert (r["settings"]["nontext_repeat"], r["settings"]["nontext_repeat_mode"], r["settings"]["ts_release"]) == (5, "series_block", "0801")
        # the value prefixes are text, kept apart as a subclass with the same positions in both runs
        prefix = p["stats"]["subclasses"]["ts_value_prefix"]
        assert prefix["count"] == r["stats"]["subclasses"]["ts_value_prefix"]["count"] > 0
        shares = p["text_subclasses"]["ts_value_prefix"]["share_of_text_mass"]
        assert all(0 < shares[g] < 1 for g in ("early", "middle", "late"))
        assert np.all(np.array(prefix["mass"]) <= np.array(p["stats"]["mass"])[:, 0] + 1e-9)
