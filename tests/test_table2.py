"""``lmms-textdom table2`` on the embedded default: the paper's Table 2 rows from real lmms-eval runs."""

from __future__ import annotations

import os
import subprocess
import sys

from lmms_textdom.editing.pruning import kept_count
from tests.lmms_runs import samples_of

TASK = "mmmu_pro_standard_textdom"


def table2(tmp_path, *args: str) -> dict[str, list[str]]:
    env = dict(os.environ, LMMS_TEXTDOM_CACHE=str(tmp_path / "cache"))
    command = [sys.executable, "-m", "lmms_textdom", "table2", "--tasks", TASK, "--limit", "3", "--output", str(tmp_path / "runs"), *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "RANDOM weights" in done.stdout
    rows = {}
    for line in done.stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(cells) == 6 and cells[0] != "setting":
            rows[cells[0]] = cells[1:]
    return rows


def check_cells(cells: list[str]) -> None:
    for pair in cells[:3]:
        mdi, aei = (float(v) for v in pair.split(" / "))
        assert mdi > 0 and aei > 0
    assert 0 <= float(cells[3]) <= 1 and cells[4] == "3"



def test_pruning_rows(tmp_path):
    rows = table2(tmp_path)
    assert list(rows) == ["no pruning, x1", "prune 75%", "prune 90%", "prune 95%"]
    for cells in rows.values():
        check_cells(cells)
    baseline = samples_of(tmp_path / "runs" / "r0_x1", TASK)
    images = {qid: row["textdom"]["stats"]["counts"][1] // 25 for qid, row in baseline.items()}
    for ratio in (0.75, 0.9, 0.95):
        samples = samples_of(tmp_path / "runs" / f"r{ratio:g}_x1", TASK)
        for qid, row in samples.items():
            settings = row["textdom"]["settings"]
            assert (settings["prune_method"], settings["prune_ratio"], settings["nontext_repeat"]) == ("cls", ratio, 1)
            assert settings["nontext_original"] == 25 * images[qid]
            assert row["textdom"]["stats"]["counts"][1] == settings["nontext_kept"] == images[qid] * kept_count(25, ratio)


def test_replication_rows(tmp_path):
    rows = table2(tmp_path, "--repeats", "1", "5", "10")
    assert list(rows) == ["no pruning, x1", "no pruning, x5", "no pruning, x10"]
    for cells in rows.values():
        check_cells(cells)
    baseline = samples_of(tmp_path / "runs" / "r0_x1", TASK)
    for k in (5, 10):
        for qid, row in samples_of(tmp_path / "runs" / f"r0_x{k}", TASK).items():
            base = baseline[qid]["textdom"]["stats"]["counts"]
            assert row["textdom"]["stats"]["counts"] == [base[0], k * base[1]]
            assert row["textdom"]["settings"]["prune_method"] is None and row["textdom"]["settings"]["nontext_repeat"] == k
