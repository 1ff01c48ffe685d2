"""``lmms-textdom knockout`` through the real CLI on the embedded default, then ``lmms-textdom report`` on its runs."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.lmms_runs import samples_of

TASK = "mmmu_pro_standard_textdom"


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("knockout")
    env = dict(os.environ, LMMS_TEXTDOM_CACHE=str(root / "cache"))
    command = [
        sys.executable, "-m", "lmms_textdom", "knockout", "--tasks", TASK, "--limit", "2",
        "--window", "4", "--stride", "4", "--key-stats", "--output", str(root / "runs"),
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    return root / "runs", done.stdout


def test_windows_cover_every_layer_and_bad_ones_are_refused():
    from lmms_textdom.core.errors import UsageError
    from lmms_textdom.sweeps.knockout import windows

    assert windows(8, 2, 1) == [(i, i + 1) for i in range(7)]
    assert windows(8, 3, 3) == [(0, 2), (3, 5), (5, 7)]
    assert windows(8, 8, 1) == [(0, 7)]
    with pytest.raises(UsageError, match="wider than the language model"):
        windows(8, 9, 1)
    with pytest.raises(UsageError, match="at least 1"):
        windows(8, 2, 0)


def table_rows(stdout: str) -> dict[str, list[str]]:
    rows = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(cells) == 6 and cells[0] != "layers knocked out":
            rows[cells[0]] = cells[1:]
    return rows


def test_sweep_table_and_figure(sweep):
    runs, stdout = sweep
    assert "RANDOM weights" in stdout
    rows = table_rows(stdout)
    assert list(rows) == ["none (baseline)", "0-3", "4-7"]
    for name in ("0-3", "4-7"):
        accuracy, delta, changed, logprob, samples = rows[name]
        assert 0 <= float(accuracy) <= 1 and 0 <= float(changed) <= 1 and samples == "2"
        assert float(logprob) != 0  # random weights: losing the image moves the answer's probability
        assert float(delta) == pytest.approx(float(accuracy) - float(rows["none (baseline)"][0]), abs=0.011)
    for name in ("knockout.png", "knockout.svg", "knockout.md"):
        assert (runs / name).stat().st_size > 0
    svg = (runs / "knockout.svg").read_text()
    assert "answers changed" in svg and "MDI per layer" in svg and "log p of the" in svg
    with (runs / "knockout.csv").open() as handle:
        lines = list(csv.reader(handle))
    assert [line[:2] for line in lines[1:3]] == [["0", "3"], ["4", "7"]]
    mdi = lines[lines.index(["layer", "baseline_mdi"]) + 1 :]
    assert len(mdi) == 8 and all(float(v) > 0 for _, v in mdi)


def test_knocked_out_runs_record_the_setting_and_lose_the_image(sweep):
    runs, _ = sweep
    baseline = samples_of(runs / "baseline", TASK)
    for spec, (low, high) in (("0-3", (0, 3)), ("4-7", (4, 7))):
        samples = samples_of(runs / f"ko_{spec}", TASK)
        assert samples.keys() == baseline.keys()
        for row in samples.values():
            detail = row["textdom"]
            assert detail["settings"]["knockout_layers"] == spec and detail["settings"]["key_stats"] is False
            effect = detail["knockout"]
            assert effect["answer_tokens"] == baseline[row["mmmu_acc"]["id"]]["textdom"]["stats"]["rows"]
            assert effect["logprob_plain"] < 0 and effect["logprob_knocked"] < 0
            mass = np.array(detail["stats"]["mass"])
            knocked = np.zeros(8, dtype=bool)
            knocked[low : high + 1] = True
            assert np.all(mass[knocked, 1] == 0) and np.all(mass[~knocked, 1] > 0)
            assert all(v is None for v in np.array(detail["layers"]["mdi"], dtype=object)[knocked])
    for row in baseline.values():
        assert row["textdom"]["settings"]["knockout_layers"] is None
        keys = row["textdom"]["key_stats"]
        assert len(keys["layers"]) == 8 and keys["positions"] == 64
        assert all(len(layer["coords"]["text"]) <= 64 for layer in keys["layers"])


def test_report_gives_key_space_table_and_figures(sweep, tmp_path, capsys):
    from lmms_textdom.cli import main

    runs, _ = sweep
    main(["report", str(runs), "--out", str(tmp_path), "--resamples", "20", "--key-layers", "2", "5", "11"])
    captured = capsys.readouterr()
    printed = captured.out
    assert "--key-layers 11 lie outside the model's layers 0-7" in captured.err
    assert "knock-out 0-3" in printed and "knock-out 4-7" in printed
    table = (tmp_path / "key_space.md").read_text()
    assert "| layer | text~image | within:text | within:image | ratio text~image |" in table
    rows = [line for line in table.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert len(rows) == 8
    for line in rows:
        values = [float(c) for c in line.strip("|").split("|")[1:4]]
        assert all(0 <= v <= 1 for v in values)
    with (tmp_path / "key_space.csv").open() as handle:
        records = list(csv.DictReader(handle))
    assert {r["divergence"] for r in records} == {"text~image", "within:text", "within:image"} and len(records) == 24
    assert all(r["samples"] == "2" for r in records)
    for name in ("key_space", "key_projection"):
        assert (tmp_path / "figures" / f"{name}.png").stat().st_size > 0
    projection = (tmp_path / "figures" / "key_projection.svg").read_text()
    assert "layer 2 " in projection and "layer 5 " in projection and "layer 7" not in projection
