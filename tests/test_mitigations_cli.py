"""The switches and the sweep through the real CLI on the embedded defaults (offline, random weights).

- ``lmms-textdom sweep`` on LLaVA: baseline, attn_boost=0 (neutral: the plain run, token for token),
  attn_boost=0.5 and a blind run; the paired table, its CSV and figure, resuming, ``report`` on it.
- Every family: one demo run carrying attn_boost (pai or scale), attn_shift and vcd at once, and one
  blind run (LLaVA's blind run is the sweep's).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.lmms_runs import results_of

TASK = "mmmu_pro_standard_textdom"
NEW_TOKENS = 4


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("textdom-cache")


def cli(cache: Path, *args: str, timeout: int = 1200) -> subprocess.CompletedProcess:
    env = dict(os.environ, LMMS_TEXTDOM_CACHE=str(cache))
    return subprocess.run([sys.executable, "-m", "lmms_textdom", *args], env=env, capture_output=True, text=True, timeout=timeout)


def rows_of(folder: Path) -> dict[tuple[str, int], dict]:
    rows = {}
    for log in folder.glob("**/*_samples_*.jsonl"):
        task = log.stem.split("_samples_")[1]
        for line in log.read_text().splitlines():
            row = json.loads(line)
            rows[(task, int(row["doc_id"]))] = row
    assert rows, f"no sample log under {folder}"
    return rows


def table_rows(stdout: str) -> dict[str, list[str]]:
    found = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(cells) == 10 and cells[0] != "setting":
            found[cells[0]] = cells[1:]
    return found


# ----- the sweep ---------------------------------------------------------------------------------------


SWEEP = ("sweep", "--tasks", TASK, "--vary", "attn_boost=0,0.5", "--blind", "--limit", "2", "--resamples", "200")


@pytest.fixture(scope="module")
def sweep(cache, tmp_path_factory):
    output = tmp_path_factory.mktemp("sweep")
    done = cli(cache, *SWEEP, "--output", str(output))
    assert done.returncode == 0, done.stderr[-3000:]
    return output, done.stdout


def test_sweep_prints_the_paired_table(sweep):
    output, stdout = sweep
    assert "RANDOM weights" in stdout
    rows = table_rows(stdout)
    assert list(rows) == ["baseline (plain greedy)", "attn_boost=0", "attn_boost=0.5", "blind"]
    base = rows["baseline (plain greedy)"]
    assert base[0] == "2" and 0 <= float(base[1]) <= 1 and base[2] == "" and base[-1] == ""
    for name in ("attn_boost=0", "attn_boost=0.5", "blind"):
        samples, accuracy, change, p, mdi, d_mdi, aei, d_aei, changed = rows[name]
        mean, interval = change.split(" [")
        low, high = (float(v) for v in interval.rstrip("]").split(", "))
        assert low <= float(mean) <= high and float(mean) == pytest.approx(float(accuracy) - float(base[1]), abs=0.011)
        assert 0 <= float(p) <= 1 and 0 <= int(changed) <= 2
    # neutral: the plain run, token for token, with the same MDI
    assert rows["attn_boost=0"][-1] == "0" and rows["attn_boost=0"][5] == "+0.00 / +0.00 / +0.00"
    # the boost moves attention onto the image in layers 2-7: MDI falls in the late layers
    assert float(rows["attn_boost=0.5"][5].split(" / ")[2]) < 0
    assert rows["blind"][4] == "none / none / none" and rows["blind"][5] == "none / none / none"


def test_neutral_point_is_the_plain_run_and_records_say_what_ran(sweep):
    output, _ = sweep
    baseline, neutral, boosted, blind = (rows_of(output / name) for name in ("baseline", "attn_boost=0", "attn_boost=0.5", "blind"))
    assert baseline.keys() == neutral.keys() == boosted.keys() == blind.keys()
    for key, row in baseline.items():
        plain, same = row["textdom"], neutral[key]["textdom"]
        assert neutral[key]["filtered_resps"] == row["filtered_resps"], key
        assert same["values"] == plain["values"] and same["stats"]["mass"] == plain["stats"]["mass"], key
        assert "attn_boost" not in same["settings"] and "blind" not in plain["settings"]
        settings = boosted[key]["textdom"]["settings"]
        assert (settings["attn_boost"], settings["attn_boost_mode"], settings["attn_boost_layers"]) == (0.5, "pai", "2-7")
        mass = np.array(boosted[key]["textdom"]["stats"]["mass"])
        assert np.all(mass[:, 1] > 0)
        # blind: no non-text position, the task's own text unchanged, accuracy but no MDI
        seen = blind[key]["textdom"]
        assert seen["settings"]["blind"] is True and seen["stats"]["counts"][1] == 0
        assert all(v is None for v in seen["values"].values())
        assert seen["text_subclasses"]["task"]["count"] == plain["text_subclasses"]["task"]["count"]
        assert blind[key]["mmmu_acc"]["parsed_pred"] is not None
    assert results_of(output / "blind")["results"][TASK]["mmmu_acc,none"] is not None


def test_sweep_writes_csv_figure_and_resumes(sweep, cache):
    output, stdout = sweep
    with (output / "sweep.csv").open() as handle:
        records = {r["setting"]: r for r in csv.DictReader(handle)}
    assert set(records) == {"baseline", "attn_boost=0", "attn_boost=0.5", "blind"}
    boosted = records["attn_boost=0.5"]
    assert float(boosted["mdi_late_change_low"]) <= float(boosted["mdi_late_change"]) <= float(boosted["mdi_late_change_high"])
    assert records["blind"]["blind"] == "True" and records["blind"]["mdi_late"] == ""
    svg = (output / "sweep.svg").read_text()
    assert "change in MDI, late layers" in svg and "blind (no MDI)" in svg and "attn_boost=0.5" in svg
    # a second call finds every point finished and runs nothing
    again = cli(cache, *SWEEP, "--output", str(output))
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("done already:") == 4 and "running:" not in again.stdout
    assert table_rows(again.stdout) == table_rows(stdout)


def test_report_draws_the_sweep(sweep, tmp_path, capsys):
    from lmms_textdom.cli import main

    output, _ = sweep
    main(["report", str(output), "--out", str(tmp_path), "--resamples", "200"])
    printed = capsys.readouterr().out
    assert "each setting against the baseline on the same samples" in printed
    assert table_rows(printed).keys() == {"baseline (plain greedy)", "attn_boost=0", "attn_boost=0.5", "blind"}
    assert "| pai 0.5 @2-7 |" in printed.replace("  ", " ") and "| blind |" in printed  # the leaderboard names the switch
    for name in ("sweep.png", "sweep.svg", "sweep.md", "sweep.csv"):
        assert (tmp_path / "sweeps" / output.name / name).stat().st_size > 0


@pytest.mark.parametrize(
    "args,message",
    [
        (("--vary", "attn_boost=-1"), "point 'attn_boost=-1': llava_hf_textdom: attn_boost=-1 with attn_boost_mode=pai"),
        (("--vary", "attn_shift=1:1,0:1"), "point 'attn_shift=0:1': llava_hf_textdom: model_arg attn_shift='0:1' is invalid"),
        (("--vary", "boost=1"), "--vary boost: llava_hf_textdom has no model_arg boost"),
        (("--vary", "attn_boost=0.2", "--model_args", "prune_ratio=0.5", "--blind"), "point 'blind': llava_hf_textdom: blind=true removes the non-text input"),
        (("--vary", "attn_boost"), "--vary takes KEY=v1,v2,..."),
    ],
)
def test_bad_sweeps_fail_before_any_run(sweep, cache, tmp_path, args, message):
    done = cli(cache, "sweep", "--tasks", TASK, "--output", str(tmp_path), *args)
    assert done.returncode == 2 and message in done.stderr, done.stderr[-2000:]
    assert not any(tmp_path.iterdir()), "nothing may run"


# ----- every family ------------------------------------------------------------------------------------


FAMILIES = {  # model -> (task, attn_boost_mode)
    "llava_hf_textdom": (TASK, "scale"),
    "llava_next_textdom": (TASK, "pai"),
    "qwen2_5_vl_textdom": ("mmmu_pro_standard_textdom,mmbench_video_textdom", "scale"),
    "kimi_vl_textdom": (TASK, "pai"),
    "videollama3_textdom": ("mmbench_video_textdom", "scale"),
    "qwen2_audio_textdom": ("iemocap_textdom", "pai"),
    "chatts_textdom": ("timeseries_reasoning_textdom", "scale"),
    "graphgpt_textdom": ("graphgpt_pubmed_lp_textdom", "pai"),
}
SWITCHED = "attn_boost=0.5,attn_boost_mode={mode},attn_boost_layers=1-3,attn_shift=1.5:0.6,vcd_alpha=1,vcd_noise=400"
#: attn_shift's default layers: ClearSight's middle, scaled to the tiny depth (Kimi-VL's default has 4 layers)
SHIFT_LAYERS = {"kimi_vl_textdom": "1-2"}


@pytest.fixture(scope="module")
def family_runs(cache, tmp_path_factory):
    done: dict[tuple[str, str], dict] = {}

    def runs(model: str, kind: str) -> dict:
        if (model, kind) not in done:
            task, mode = FAMILIES[model]
            args = "blind=true" if kind == "blind" else SWITCHED.format(mode=mode)
            output = tmp_path_factory.mktemp(f"{model}_{kind}")
            finished = cli(cache, "demo", "--model", model, "--tasks", task, "--limit", "2", "--gen-kwargs", f"max_new_tokens={NEW_TOKENS}", "--model-args", args, "--output", str(output))
            assert finished.returncode == 0, finished.stderr[-3000:]
            done[(model, kind)] = rows_of(output)
        return done[(model, kind)]

    return runs


@pytest.mark.parametrize("model", list(FAMILIES))
def test_attention_switches_and_vcd_run_on_every_family(model, family_runs):
    rows = family_runs(model, "switched")
    _, mode = FAMILIES[model]
    for key, row in rows.items():
        record = row["textdom"]
        assert "failure" not in record, (key, record.get("failure"))
        settings = record["settings"]
        assert (settings["attn_boost"], settings["attn_boost_mode"], settings["attn_boost_layers"]) == (0.5, mode, "1-3"), key
        assert (settings["attn_shift"], settings["attn_shift_layers"]) == ("1.5:0.6", SHIFT_LAYERS.get(model, "2-4")), key
        assert (settings["vcd_alpha"], settings["vcd_noise"], settings["vcd_beta"]) == (1.0, 400, 0.1), key
        stats = record["stats"]
        assert sum(stats["counts"][1:]) > 0 and 1 <= stats["rows"] <= NEW_TOKENS, key
        assert record["values"]["mdi_middle"] is not None, key


@pytest.mark.parametrize("model", [m for m in FAMILIES if m != "llava_hf_textdom"])
def test_blind_runs_on_every_family(model, family_runs):
    blind, switched = family_runs(model, "blind"), family_runs(model, "switched")
    assert blind.keys() == switched.keys()
    for key, row in blind.items():
        record = row["textdom"]
        assert "failure" not in record and record["settings"]["blind"] is True, key
        assert sum(record["stats"]["counts"][1:]) == 0 and all(v is None for v in record["values"].values()), key
        parts, seen = record["text_subclasses"], switched[key]["textdom"]["text_subclasses"]
        if model == "graphgpt_textdom":  # its task text held the <graph> markers: the newlines around them join it
            assert parts["task"]["count"] >= seen["task"]["count"], key
        else:
            assert parts["task"]["count"] == seen["task"]["count"], key
        assert parts["template"]["count"] < seen["template"]["count"], key  # the placeholders' own wrapping is gone


def test_a_sweep_over_a_task_group_tabulates_its_subtasks(sweep, tmp_path):
    """`sweep` without --tasks runs the group mmmu_pro_textdom; lmms-eval logs samples per subtask only and
    lists the group's members under group_subtasks in results.json (as it writes for that group)."""
    from lmms_textdom.integration.runner import latest_results
    from lmms_textdom.report.paired_sweep import tabulate

    output, _ = sweep
    copy = tmp_path / "sweep"
    shutil.copytree(output, copy)
    manifest = copy / "textdom_sweep.json"
    spec = json.loads(manifest.read_text())
    direct = tabulate(manifest, resamples=50)
    for folder in ("baseline", *(p["folder"] for p in spec["points"]), spec["blind"]):
        results = latest_results(copy / folder)
        data = json.loads(results.read_text())
        results.write_text(json.dumps({**data, "group_subtasks": {"mmmu_pro_textdom": [TASK]}}))
    manifest.write_text(json.dumps({**spec, "tasks": "mmmu_pro_textdom"}))
    (table,) = tabulate(manifest, resamples=50)
    assert table.task == TASK and [r.name for r in table.rows] == [r.name for r in direct[0].rows]
    assert [r.accuracy for r in table.rows] == [r.accuracy for r in direct[0].rows]
