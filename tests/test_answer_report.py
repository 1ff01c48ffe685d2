"""A CoT-length run through the real CLI, then the report's answer-position and text-part views."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from lmms_textdom.core.metrics import layer_groups
from lmms_textdom.core.stats import SampleStats
from lmms_textdom.core.stepwise import BINS, HEAD
from lmms_textdom.core.views import decay
from tests.lmms_runs import run_cli_ok
from tests.test_report import assert_drawn, read_csv, report

TASK = "mmmu_pro_standard_textdom_cot"  # max_new_tokens 2048, no stop strings


@pytest.fixture(scope="module")
def cot_run(tiny_llava_dir, mmmu_data_root, tmp_path_factory):
    root = tmp_path_factory.mktemp("cot")
    start = time.monotonic()
    run_cli_ok("llava_hf_textdom", f"pretrained={tiny_llava_dir}", TASK, root, mmmu_data_root, "--limit", "3")
    print(f"CoT run: {time.monotonic() - start:.1f} s")
    (log,) = root.glob(f"**/*_samples_{TASK}.jsonl")
    return root, [json.loads(line) for line in log.read_text().splitlines()]


@pytest.fixture(scope="module")
def cot_report(cot_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    status, _, stderr = report(cot_run[0], "--out", out, "--columns", "content", "decay", "--resamples", "200")
    assert status == 0, stderr
    return out, read_csv(out / "leaderboard.csv")


def test_sample_log_carries_binned_masses_and_text_parts(cot_run):
    _, lines = cot_run
    assert len(lines) == 3
    for line in lines:
        detail = line["textdom"]
        stats = SampleStats.from_dict(detail["stats"])
        steps = stats.stepwise
        assert stats.rows > BINS and steps.rows[HEAD:].sum() == stats.rows
        # the binned masses add up to the record's per-layer masses, group by group
        for g, layers in enumerate(layer_groups(stats.num_layers).values()):
            whole = stats.mass[list(layers)].sum(0)
            np.testing.assert_allclose(steps.mass[g, HEAD:, : len(stats.classes)].sum(0), whole, rtol=1e-5)
        parts = sum(stats.subclass_mass[n] for n in ("sink", "template", "task"))
        np.testing.assert_allclose(parts, stats.mass[:, 0], rtol=1e-6)
        assert stats.subclass_counts["sink"] == 1 and stats.subclass_counts["task"] > stats.subclass_counts["template"] > 0
        assert detail["stepwise"]["decay"]["decay_late"] == pytest.approx(decay(stats, "late"), rel=1e-9)
        assert len(json.dumps(detail["stepwise"])) + len(json.dumps(detail["stats"]["stepwise"])) < 10_000


def test_report_draws_the_answer_curve_and_the_text_parts(cot_report):
    out, _ = cot_report
    assert_drawn(out / "figures", "answer_position", "relative position in the answer", "MDI, late layers", "tiny-llava")
    # one run: a single panel stacking sink, template, task and image
    svg = (out / "figures" / "text_parts.svg").read_text()
    assert all(name in svg for name in ("sink", "template", "task", "image", "share of the attention on the prompt"))
    assert svg.count('id="FillBetweenPolyCollection_') == 4  # one band per part


def test_optional_columns_equal_hand_computation(cot_run, cot_report):
    _, rows = cot_report
    (row,) = rows
    content = []
    for line in cot_run[1]:
        s = line["textdom"]["stats"]
        late = layer_groups(len(s["mass"]))["late"]
        task = sum(s["subclasses"]["task"]["mass"][i] for i in late) / s["subclasses"]["task"]["count"]
        image = sum(s["mass"][i][1] for i in late) / s["counts"][1]
        content.append(task / image)
    assert float(row["content_mdi_late"]) == pytest.approx(np.mean(content), rel=1e-9)
    assert float(row["content_mdi_late_low"]) <= float(row["content_mdi_late"]) <= float(row["content_mdi_late_high"])
    assert row["decay_late"] != "" and int(row["decay_late_n"]) == 3


def test_default_table_keeps_the_paper_layout(cot_run, tmp_path):
    status, stdout, _ = report(cot_run[0], "--out", tmp_path, "--no-figures", "--resamples", "0")
    assert status == 0
    header = next(line for line in stdout.splitlines() if line.startswith("| model"))
    assert "content" not in header and "decay" not in header
    assert not any(k.startswith(("content_", "decay_")) for k in read_csv(tmp_path / "leaderboard.csv")[0])
