"""The paper's graph rows of Table 1 (x1 / x5 / x10) in one command, on GraphGPT's embedded default."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.lmms_runs import samples_of

GROUP = "graphgpt_eval_textdom"
TASK = "graphgpt_pubmed_lp_textdom"


def test_replication_rows_for_graphs(tmp_path):
    env = dict(os.environ, LMMS_TEXTDOM_CACHE=str(tmp_path / "cache"))
    command = [
        sys.executable, "-m", "lmms_textdom", "table2", "--model", "graphgpt_textdom", "--tasks", GROUP,
        "--repeats", "1", "5", "10", "--limit", "1", "--gen-kwargs", "max_new_tokens=4", "--output", str(tmp_path / "runs"),
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Embedded default of graphgpt_textdom" in done.stdout and "RANDOM weights" in done.stdout
    rows = {}
    for line in done.stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(cells) == 6 and cells[0] != "setting":
            rows[cells[0]] = cells[1:]
    assert list(rows) == ["no pruning, x1", "no pruning, x5", "no pruning, x10"]
    for cells in rows.values():
        for pair in cells[:3]:
            assert all(float(v) > 0 for v in pair.split(" / "))
        assert cells[4] == "4"  # one item of each of the four tasks
    baseline = samples_of(tmp_path / "runs" / "r0_x1", TASK, key=lambda row: row["doc_id"])
    for k in (5, 10):
        for doc_id, row in samples_of(tmp_path / "runs" / f"r0_x{k}", TASK, key=lambda row: row["doc_id"]).items():
            base = baseline[doc_id]["textdom"]["stats"]
            text, graph = base["counts"]
            assert row["textdom"]["stats"]["counts"] == [text, k * graph]
            markers = base["subclasses"]["graph_marker"]["count"]
            assert row["textdom"]["stats"]["subclasses"]["graph_marker"]["count"] == markers > 0
            assert row["textdom"]["settings"]["nontext_repeat"] == k
