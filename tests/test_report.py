"""``lmms-textdom report`` on real lmms-eval output folders of the tiny models.

The runs: a measured run of the MMMU-Pro group (two tasks), a measured run of a deeper second
checkpoint on another task, an accuracy-only run, and a later rerun of one task (a duplicate).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from lmms_textdom.cli import main
from lmms_textdom.core.metrics import AGGREGATIONS, aggregate_samples
from lmms_textdom.report.bootstrap import Replicator
from lmms_textdom.report.labels import distinct_tags, readable_date
from lmms_textdom.report.runs import load_runs
from tests.lmms_runs import run_cli
from tests.test_package import imported_after

CELLS = ("mdi_early", "aei_early", "mdi_middle", "aei_middle", "mdi_late", "aei_late")
GROUP_LAYERS = {"early": [0, 1], "middle": [1, 2], "late": [2, 3]}  # the 4-layer tiny LLaVA


@pytest.fixture(scope="module")
def deeper(tmp_path_factory):
    """A second checkpoint with 6 language-model layers."""
    from lmms_textdom.tiny import save_llava

    return save_llava(tmp_path_factory.mktemp("ckpt6") / "tiny-llava-6l", num_layers=6)


@pytest.fixture(scope="module")
def runs_root(tiny_llava_dir, deeper, mmmu_data_root, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    ckpt = f"pretrained={tiny_llava_dir}"
    first = [
        (ckpt, "mmmu_pro_textdom", root / "main", "--batch_size", "2"),
        (f"pretrained={deeper}", "mmmu_pro_standard4_textdom", root / "deeper", "--limit", "4"),
        (f"{ckpt},textdom=false", "mmmu_pro_standard_textdom", root / "accuracy_only"),
    ]
    with ThreadPoolExecutor(len(first)) as pool:
        done = list(pool.map(lambda a: run_cli("llava_hf_textdom", a[0], a[1], a[2], mmmu_data_root, *a[3:]), first))
    # later, into the same folder: a duplicate of the standard task of the first run
    done.append(run_cli("llava_hf_textdom", ckpt, "mmmu_pro_standard_textdom", root / "main", mmmu_data_root, "--limit", "3"))
    for run in done:
        assert run.returncode == 0, run.stderr[-3000:]
    assert len(list(root.glob("**/*_results.json"))) == 4
    return root


def results_files(folder: Path) -> list[Path]:
    """Oldest first (lmms-eval names them by date)."""
    return sorted(folder.glob("**/*_results.json"), key=lambda p: p.name)


def report(*args) -> tuple[int, str, str]:
    """Run ``lmms-textdom report`` in-process; returns (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    status = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(["report", *map(str, args)])
        except SystemExit as exc:
            status = exc.code
    return status, out.getvalue(), err.getvalue()


def read_csv(path: Path) -> list[dict]:
    with path.open() as f:
        return list(csv.DictReader(f))


def row_of(rows: list[dict], task: str, model: str = "tiny-llava", source: str | None = None) -> dict:
    (row,) = [r for r in rows if r["task"] == task and r["model"] == model and (source is None or r["source"] == source)]
    return row


def logged_samples(results_file: str, task: str, leaves: tuple[str, ...] = ()) -> list[dict]:
    path = Path(results_file)
    date = path.name.removesuffix("_results.json")
    lines = []
    for leaf in leaves or (task,):
        lines += path.with_name(f"{date}_samples_{leaf}.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


@pytest.fixture(scope="module")
def default_report(runs_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    status, stdout, stderr = report(runs_root, "--out", out, "--progress")
    assert status == 0, stderr
    return {"out": out, "stdout": stdout, "stderr": stderr, "rows": read_csv(out / "leaderboard.csv")}


# ----- the table ---------------------------------------------------------------------------------


def test_one_row_per_run_with_models_tasks_and_sources_mixed(default_report):
    found = {(r["model"], r["task"], r["source"], r["modality"]) for r in default_report["rows"]}
    assert found == {
        ("tiny-llava", "mmmu_pro_textdom", "sample log", "image"),
        ("tiny-llava", "mmmu_pro_standard_textdom", "sample log", "image"),
        ("tiny-llava", "mmmu_pro_vision_textdom", "sample log", "image"),
        ("tiny-llava-6l", "mmmu_pro_standard4_textdom", "sample log", "image"),
        ("tiny-llava", "mmmu_pro_standard_textdom", "", ""),  # accuracy only
    }
    table = default_report["stdout"]
    assert "| model | modality | dataset | setting | early MDI | early AEI | middle MDI |" in table
    assert "mean of per-sample values" in table.splitlines()[0] and "1000 resamples, seed 0" in table.splitlines()[0]


def test_mean_cells_equal_hand_computation_from_the_sample_logs(default_report):
    leaves = {"mmmu_pro_textdom": ("mmmu_pro_standard_textdom", "mmmu_pro_vision_textdom")}
    measured = [r for r in default_report["rows"] if r["source"] == "sample log"]
    for row in measured:
        samples = logged_samples(row["results_file"], row["task"], leaves.get(row["task"], ()))
        results = json.loads(Path(row["results_file"]).read_text())["results"][row["task"]]
        assert int(row["samples"]) == len(samples)
        for cell in CELLS:
            values = [s[cell] for s in samples if s[cell] is not None]
            assert float(row[cell]) == pytest.approx(sum(values) / len(values), rel=1e-12), (row["task"], cell)
            assert float(row[cell]) == pytest.approx(results[f"{cell},none"], rel=1e-12)
            assert int(row[f"{cell}_n"]) == len(values)
            # a mean of resampled values never leaves the range of the values (up to rounding)
            low, high = float(row[f"{cell}_low"]), float(row[f"{cell}_high"])
            assert min(values) * (1 - 1e-12) <= low <= high <= max(values) * (1 + 1e-12)
        assert float(row["accuracy"]) == results["mmmu_acc,none"] and row["accuracy_metric"] == "mmmu_acc"


def test_pooled_and_geomean_cells_by_hand(runs_root, tmp_path):
    main_run = runs_root / "main"
    vision_file = results_files(main_run)[0]  # the older run: its vision task has no rerun
    samples = logged_samples(str(vision_file), "mmmu_pro_vision_textdom")
    for aggregation in ("pooled", "geomean"):
        status, stdout, stderr = report(main_run, "--out", tmp_path / aggregation, "--aggregation", aggregation, "--resamples", "0", "--no-figures")
        assert status == 0, stderr
        assert stdout.splitlines()[0].count("bootstrap") == 0
        row = row_of(read_csv(tmp_path / aggregation / "leaderboard.csv"), "mmmu_pro_vision_textdom")
        assert row["aggregation"] == aggregation and row["mdi_late_low"] == ""
        for group, layers in GROUP_LAYERS.items():
            if aggregation == "geomean":
                expected = math.exp(sum(math.log(s[f"mdi_{group}"]) for s in samples) / len(samples))
            else:  # all rows of all samples as one unit; per-token normalisers are rows x token counts
                stats = [s["textdom"]["stats"] for s in samples]
                text = sum(st["mass"][layer][0] for st in stats for layer in layers)
                image = sum(st["mass"][layer][1] for st in stats for layer in layers)
                text_exposure = sum(st["rows"] * st["counts"][0] for st in stats)
                image_exposure = sum(st["rows"] * st["counts"][1] for st in stats)
                expected = (text / text_exposure) / (image / image_exposure)
            assert float(row[f"mdi_{group}"]) == pytest.approx(expected, rel=1e-9), (aggregation, group)
    assert "pooled: all output rows of all samples as one unit" in (tmp_path / "pooled" / "leaderboard.md").read_text()


# ----- uncertainty -------------------------------------------------------------------------------


def interval_columns(rows: list[dict], task: str) -> list[str]:
    row = row_of(rows, task, source="sample log")
    return [row[f"{cell}_{end}"] for cell in CELLS for end in ("low", "high")]


def test_intervals_are_seeded_and_independent_of_the_other_runs(runs_root, default_report, tmp_path):
    args = ("--resamples", "1000", "--no-figures")
    report(runs_root / "main", "--out", tmp_path / "again", *args)
    report(runs_root / "main", "--out", tmp_path / "seed1", "--seed", "1", *args)
    alone, other_seed = read_csv(tmp_path / "again" / "leaderboard.csv"), read_csv(tmp_path / "seed1" / "leaderboard.csv")
    everything = default_report["rows"]
    for task in ("mmmu_pro_textdom", "mmmu_pro_vision_textdom"):
        assert interval_columns(alone, task) == interval_columns(everything, task)
        assert interval_columns(other_seed, task) != interval_columns(everything, task)


@pytest.mark.parametrize("aggregation", AGGREGATIONS)
def test_bootstrap_replicates_equal_the_metric_core_on_the_same_resample(runs_root, aggregation):
    (group,) = [run for run in load_runs([runs_root / "main"]).runs if run.task == "mmmu_pro_textdom"]
    samples = group.samples
    indices = np.random.default_rng(7).integers(0, len(samples), size=(4, len(samples)))
    replicates = Replicator(samples, aggregation).replicates(indices)
    for i, resample in enumerate(indices):
        expected = aggregate_samples([samples[j] for j in resample], aggregation)
        for cell in CELLS:
            assert replicates[cell][i] == pytest.approx(expected[cell].value, rel=1e-9), (aggregation, cell)


# ----- real-world inputs -------------------------------------------------------------------------


def test_duplicate_run_latest_wins_and_the_report_says_so(runs_root, default_report):
    older, newer = results_files(runs_root / "main")
    row = row_of(default_report["rows"], "mmmu_pro_standard_textdom", source="sample log")
    assert row["results_file"] == str(newer.resolve()) and row["samples"] == "3"
    assert f"kept {newer.resolve()}" in default_report["stderr"] and f"dropped {older.resolve()}" in default_report["stderr"]
    # the group of the older run stays: it is another task
    assert row_of(default_report["rows"], "mmmu_pro_textdom")["results_file"] == str(older.resolve())


def test_accuracy_only_run_has_accuracy_and_empty_metric_cells(runs_root, default_report):
    row = row_of(default_report["rows"], "mmmu_pro_standard_textdom", source="")
    (path,) = results_files(runs_root / "accuracy_only")
    results = json.loads(path.read_text())["results"]["mmmu_pro_standard_textdom"]
    assert float(row["accuracy"]) == results["mmmu_acc,none"] and row["samples"] == "6"
    assert all(row[cell] == "" for cell in CELLS) and row["measured"] == ""


def test_unreadable_and_partial_files_are_skipped_with_a_warning(runs_root, tmp_path):
    copy = shutil.copytree(runs_root / "main", tmp_path / "main")
    older = results_files(copy)[0]
    vision_log = older.with_name(older.name.replace("_results.json", "_samples_mmmu_pro_vision_textdom.jsonl"))
    vision_log.write_bytes(vision_log.read_bytes()[:-500])  # cut off mid-line, as by a full disk
    broken = older.with_name("20200101_000000_results.json")
    broken.write_text('{"results": {"mmmu_pro')
    orphan = older.with_name("20200101_000001_samples_mmmu_pro_vision_textdom.jsonl")
    orphan.write_text("{}\n")

    status, _, stderr = report(copy, "--out", tmp_path / "out", "--resamples", "50", "--no-figures")
    assert status == 0, stderr
    assert f"skipped {broken.resolve()}: not readable as JSON" in stderr
    assert f"skipped {vision_log.resolve()}: line 6 is not a complete sample" in stderr
    assert f"skipped {orphan.resolve()}: no results file beside it" in stderr
    rows = read_csv(tmp_path / "out" / "leaderboard.csv")
    results = json.loads(older.read_text())["results"]
    for task in ("mmmu_pro_vision_textdom", "mmmu_pro_textdom"):  # the group lost one of its logs too
        row = row_of(rows, task)
        assert row["source"] == "results file" and row["mdi_late_low"] == ""
        assert float(row["mdi_late"]) == results[task]["mdi_late,none"]

    status, _, stderr = report(copy, "--out", tmp_path / "pooled", "--aggregation", "pooled", "--resamples", "0", "--no-figures")
    assert status == 0 and "pooled needs the sample log" in stderr
    assert row_of(read_csv(tmp_path / "pooled" / "leaderboard.csv"), "mmmu_pro_vision_textdom")["mdi_late"] == ""


def test_progress_is_reported_when_asked(default_report):
    assert "report: reading sample logs 100%" in default_report["stderr"]
    assert "report: bootstrapping runs 100% (5 of 5)" in default_report["stderr"]


def test_token_counts_are_logged_with_and_without_textdom(runs_root):
    """The accuracy-only run (textdom=false) fills lmms-eval's token_counts too: the same prompt gives
    the same input count as in the measured run."""
    measured = {row["doc_id"]: row for row in logged_samples(str(results_files(runs_root / "main")[0]), "mmmu_pro_standard_textdom")}
    plain = logged_samples(str(results_files(runs_root / "accuracy_only")[0]), "mmmu_pro_standard_textdom")
    assert len(plain) == len(measured)
    for row in plain:
        (counts,) = row["token_counts"]
        assert counts["input_tokens"] == sum(measured[row["doc_id"]]["textdom"]["stats"]["counts"])
        assert 1 <= counts["output_tokens"] <= 64  # the task's max_new_tokens


def test_bad_input_names_the_fix(tmp_path):
    status, _, stderr = report(tmp_path / "nowhere")
    assert status == 2 and "does not exist; pass lmms-eval --output_path folders" in stderr
    status, _, stderr = report(tmp_path)
    assert status == 2 and "no lmms-eval results (*_results.json)" in stderr and "--output_path" in stderr
    (tmp_path / "20260101_000000_results.json").write_text("{}")
    status, _, stderr = report(tmp_path)
    assert status == 2 and "no readable run; rerun lmms-eval" in stderr and "20260101_000000_results.json: not an lmms-eval results file" in stderr


def test_report_needs_neither_torch_nor_lmms_eval():
    command, figures = imported_after("lmms_textdom.report.command"), imported_after("lmms_textdom.report.figures")
    assert "matplotlib" not in command and "matplotlib" in figures  # loaded only to draw
    for loaded in (command, figures):
        assert not {"torch", "transformers", "lmms_eval"} & loaded


def test_console_script_writes_every_output(runs_root, tmp_path):
    script = shutil.which("lmms-textdom", path=str(Path(sys.executable).parent))
    done = subprocess.run([script, "report", runs_root / "deeper", "--out", tmp_path], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "| tiny-llava-6l | image | mmmu_pro_standard4 | default |" in done.stdout
    assert {p.name for p in tmp_path.iterdir()} == {"leaderboard.md", "leaderboard.csv", "leaderboard.html", "figures"}


# ----- telling runs apart, and where they come from ----------------------------------------------


def test_runs_that_read_alike_get_their_date_or_folder(runs_root, default_report, tmp_path):
    # the measured and the accuracy-only run of one task: told apart by their dates
    alike = [r for r in default_report["rows"] if r["task"] == "mmmu_pro_standard_textdom"]
    dates = {r["date"] for r in alike}
    assert len(alike) == 2 and len(dates) == 2
    assert {r["run"] for r in alike} == {readable_date(d) for d in dates}
    assert all(r["run"] == "" for r in default_report["rows"] if r["task"] != "mmmu_pro_standard_textdom")
    assert "| n | run |" in default_report["stdout"]
    # the case: one checkpoint name, one task, one setting, the same date: told apart by folder
    first = shutil.copytree(runs_root / "deeper", tmp_path / "first")
    second = shutil.copytree(runs_root / "deeper", tmp_path / "second")
    for log in second.rglob("*_samples_*.jsonl"):  # a setting the label leaves out
        log.write_text(log.read_text().replace('"dtype": "float32"', '"dtype": "bfloat16"'))
    status, stdout, stderr = report(first, second, "--out", tmp_path / "out", "--resamples", "20")
    assert status == 0, stderr
    rows = read_csv(tmp_path / "out" / "leaderboard.csv")
    assert sorted((r["setting"], r["dtype"], r["run"]) for r in rows) == [("default", "bfloat16", "second"), ("default", "float32", "first")]
    for folder in ("first", "second"):
        assert f"tiny-llava-6l mmmu_pro_standard4 default ({folder})" in (tmp_path / "out" / "figures" / "layers.svg").read_text()
        assert f"({folder})" in (tmp_path / "out" / "figures" / "mdi_by_run.svg").read_text()  # the bar's tick label
    assert "| first |" in stdout and "| second |" in stdout


def test_distinct_tags_fall_back_from_date_to_folder_to_file():
    same = ("m d default", "20260101_000000")
    assert distinct_tags([("a", "1", Path("/x/r.json")), ("b", "1", Path("/x/r.json"))]) == ["", ""]
    assert distinct_tags([(*same[:1], "20260101_000000", Path("/x/a/m/r.json")), (*same[:1], "20260102_000000", Path("/x/b/m/r.json"))]) == [
        "2026-01-01 00:00:00", "2026-01-02 00:00:00",
    ]  # fmt: skip
    assert distinct_tags([(*same, Path("/x/a/m/r.json")), (*same, Path("/x/b/m/r.json"))]) == ["a", "b"]
    assert distinct_tags([(*same, Path("/x/m/r1.json")), (*same, Path("/x/m/r2.json"))]) == ["r1.json", "r2.json"]


def test_provenance_of_every_run(runs_root, default_report):
    from lmms_textdom.provenance import plugin_commit, version_of

    text = (default_report["out"] / "leaderboard.md").read_text()
    provenance = text.split("Provenance:\n", 1)[1].split("\n\n")[0].splitlines()
    assert len(provenance) == len(default_report["rows"])
    measured = row_of(default_report["rows"], "mmmu_pro_standard_textdom", source="sample log")
    (line,) = [p for p in provenance if p.startswith(f"- **tiny-llava mmmu_pro_standard default ({measured['run']})**")]
    commit = plugin_commit()
    expected = f"lmms-textdom {version_of('lmms-textdom')}" + (f" (commit {commit})" if commit else "")
    expected += f", lmms-eval {version_of('lmms-eval')}, transformers {version_of('transformers')}, torch {version_of('torch')}"
    assert expected in line and version_of("lmms-eval") == "0.7.3"
    config = json.loads(Path(measured["results_file"]).read_text())
    assert f"model_args `{config['config']['model_args']}`" in line
    generation = config["configs"]["mmmu_pro_standard_textdom"]["generation_kwargs"]
    assert f"generation kwargs `{json.dumps(generation, sort_keys=True)}`" in line and '"max_new_tokens": 64' in line
    assert f"date {readable_date(measured['date'])}" in line
    assert measured["lmms_eval_version"] == "0.7.3" and measured["model_args"] == config["config"]["model_args"]
    (plain,) = [p for p in provenance if "code versions not recorded" in p]
    assert "tiny-llava mmmu_pro_standard default" in plain and "textdom=false" in plain
    assert "Provenance" in (default_report["out"] / "leaderboard.html").read_text()


# ----- figures -----------------------------------------------------------------------------------


def assert_drawn(folder: Path, name: str, *texts: str) -> None:
    import matplotlib.image

    pixels = matplotlib.image.imread(folder / f"{name}.png")
    assert pixels.shape[0] > 200 and pixels.shape[1] > 200 and pixels[..., :3].std() > 0.05, name
    svg = ElementTree.parse(folder / f"{name}.svg").getroot()
    assert len(svg.findall(".//{http://www.w3.org/2000/svg}path")) > 20, name
    content = (folder / f"{name}.svg").read_text()
    for text in texts:
        assert text in content, (name, text)


def test_figures_of_runs_and_layers(default_report):
    figures = default_report["out"] / "figures"
    assert_drawn(figures, "mdi_by_run", "MDI = 1", "tiny-llava-6l", "mmmu_pro_vision")
    # two checkpoints of 4 and 6 layers: compared at the same relative depth
    assert_drawn(figures, "layers", "relative depth", "tiny-llava-6l mmmu_pro_standard4 default")
    assert not (figures / "replication.png").exists()
    assert "no replication sweep" in default_report["stderr"]


def test_sweep_figures_against_replication_and_pruning(runs_root, deeper, mmmu_data_root, tmp_path):
    sweep = [(f"pretrained={deeper},nontext_repeat={k}", tmp_path / f"x{k}") for k in (5, 10)]
    sweep.append((f"pretrained={deeper},prune_ratio=0.75", tmp_path / "cls75"))
    with ThreadPoolExecutor(len(sweep)) as pool:
        done = list(pool.map(lambda a: run_cli("llava_hf_textdom", a[0], "mmmu_pro_standard4_textdom", a[1], mmmu_data_root, "--limit", "4"), sweep))
    for run in done:
        assert run.returncode == 0, run.stderr[-3000:]
    status, _, stderr = report(runs_root / "deeper", tmp_path, "--out", tmp_path / "out", "--resamples", "100", "--layer-runs", "x10")
    assert status == 0, stderr
    assert [r["setting"] for r in read_csv(tmp_path / "out" / "leaderboard.csv")] == ["default", "x5", "x10", "cls 75%"]
    figures = tmp_path / "out" / "figures"
    assert_drawn(figures, "replication", "replication factor", "tiny-llava-6l mmmu_pro_standard4: late")
    assert_drawn(figures, "pruning", "pruned (%)", "tiny-llava-6l mmmu_pro_standard4 cls: early")
    assert_drawn(figures, "layers", "tiny-llava-6l mmmu_pro_standard4 x10")
    assert "mmmu_pro_standard4 default" not in (figures / "layers.svg").read_text()


# ----- the HTML page in a real browser -----------------------------------------------------------


class TableRows(HTMLParser):
    """``data-key -> data-value`` of every body row of the page's table."""

    def __init__(self):
        super().__init__()
        self.rows: list[dict] = []
        self.in_body = False
        self.sorted_by = None  # (column key, "ascending" / "descending") the page shows

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "th" and "aria-sort" in attrs:
            self.sorted_by = (attrs["data-key"], attrs["aria-sort"])
        if tag == "tbody":
            self.in_body = True
        elif tag == "tr" and self.in_body:
            self.rows.append({})
        elif tag == "td" and self.in_body:
            self.rows[-1][attrs["data-key"]] = attrs["data-value"]

    def handle_endtag(self, tag):
        if tag == "tbody":
            self.in_body = False


def rows_in_chromium(page: Path, fragment: str, profile: Path) -> TableRows:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    assert browser, "chromium is missing: run scripts/ensure-chromium.sh (apt-get install -y chromium)"
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]
    done = subprocess.run([browser, *flags, f"--user-data-dir={profile}", "--dump-dom", page.resolve().as_uri() + fragment], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    parser = TableRows()
    parser.feed(done.stdout)
    return parser


def test_html_page_sorts_by_any_column_in_chromium(default_report, tmp_path):
    page = default_report["out"] / "leaderboard.html"
    csv_rows = default_report["rows"]
    unsorted = rows_in_chromium(page, "", tmp_path)
    assert unsorted.sorted_by is None
    assert [(r["model"], r["dataset"], r["mdi_late"]) for r in unsorted.rows] == [(r["model"], r["dataset"], r["mdi_late"]) for r in csv_rows]
    for key, descending in (("mdi_late", False), ("accuracy", True), ("aei_early", True), ("model", True)):
        page_state = rows_in_chromium(page, f"#sort={key}{':desc' if descending else ''}", tmp_path)
        assert page_state.sorted_by == (key, "descending" if descending else "ascending")
        shown = [r[key] for r in page_state.rows]
        filled = [v for v in shown if v != ""]
        assert shown == filled + [""] * (len(shown) - len(filled)), key  # empty cells last
        if key == "model":
            assert filled == sorted(filled, reverse=True)
        else:
            assert [float(v) for v in filled] == sorted((float(v) for v in filled), reverse=descending), key
        assert sorted(shown) == sorted(r[key] for r in csv_rows)
