"""``lmms-textdom table2 --model chatts_textdom --repeats ...``: the paper's time-series rows in one command."""

from __future__ import annotations

import math
import os
import subprocess
import sys

from tests.lmms_runs import samples_of

TASK = "timeseries_reasoning_textdom"


def table(tmp_path, *args: str, env_extra: dict | None = None) -> tuple[str, dict[str, list[str]]]:
    env = dict(os.environ, LMMS_TEXTDOM_CACHE=str(tmp_path / "cache"), **(env_extra or {}))
    command = [sys.executable, "-m", "lmms_textdom", "table2", "--model", "chatts_textdom", "--limit", "2",
               "--output", str(tmp_path / "runs"), *args]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {}
    for line in done.stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(cells) == 6 and cells[0] != "setting":
            rows[cells[0]] = cells[1:]
    return done.stdout, rows


def check_cells(cells: list[str]) -> None:
    for pair in cells[:3]:
        mdi, aei = (float(v) for v in pair.split(" / "))
        assert mdi > 0 and aei > 0
    assert 0 <= float(cells[3]) <= 1 and cells[4] == "2"


def test_embedded_default_gives_the_replication_rows(tmp_path):
    stdout, rows = table(tmp_path, "--repeats", "1", "5")
    assert "Embedded default of chatts_textdom" in stdout and "RANDOM weights" in stdout and f"chatts_textdom, {TASK}" in stdout
    assert list(rows) == ["no pruning, x1", "no pruning, x5"]
    for cells in rows.values():
        check_cells(cells)
    plain = samples_of(tmp_path / "runs" / "r0_x1", TASK, key=lambda row: row["doc_id"])
    for doc_id, row in samples_of(tmp_path / "runs" / "r0_x5", TASK, key=lambda row: row["doc_id"]).items():
        text, ts = plain[doc_id]["textdom"]["stats"]["counts"]
        assert row["textdom"]["stats"]["counts"] == [text, 5 * ts]
        assert ts == math.ceil(int(row["input"].split("length ")[1].split(":")[0]) / 4)  # patch 4 in the tiny 0801


def test_a_given_checkpoint_reads_the_users_data(tmp_path, tiny_chatts_dirs, timeseries_data_root):
    stdout, rows = table(tmp_path, "--repeats", "10", "--pretrained", str(tiny_chatts_dirs["original"]),
                         env_extra={"LMMS_TEXTDOM_DATA": str(timeseries_data_root)})  # fmt: skip
    assert "RANDOM" not in stdout and list(rows) == ["no pruning, x10"]
    check_cells(rows["no pruning, x10"])
    for row in samples_of(tmp_path / "runs" / "r0_x10", TASK, key=lambda row: row["doc_id"]).values():
        settings = row["textdom"]["settings"]
        assert (settings["ts_release"], settings["nontext_repeat"]) == ("original", 10)
        assert row["textdom"]["stats"]["counts"][1] == 10 * settings["nontext_original"]
