"""Every common model_arg on every family, through ``lmms-textdom demo`` on the family's embedded default
(the real lmms-eval CLI, offline).

Two runs per family carry the args at once: one with sdpa and all of them, one with eager attention
and those that shape the attention (the knock-out, pruning, replication); the eight demos are
tested by the same runs, and so are the attention maps and the report's sample viewer of every family. Each record must show each arg's effect: the knocked-out
layers' rows put no mass on non-text positions, the key sample is there, |O| is each item's kept
count times the repeat, and eager gives sdpa's masses. The first document of every task of a
default is the smallest input of its family (issue 22): it must run and give the |O| it allows.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from lmms_textdom.editing.pruning import kept_count

KNOCKED = (1, 2)
NEW_TOKENS = 8
REPEAT, RATIO = 2, 0.5
#: what shapes the inputs and the attention; the eager run carries these only
EDITS = f"knockout_layers={KNOCKED[0]}-{KNOCKED[-1]},nontext_repeat={REPEAT}"
#: what only adds records (a second scoring pass, the key sample, the attention maps): the sdpa run carries them too
RECORDS = "knockout_score=true,key_stats=true,attention_maps=steps"


@dataclass(frozen=True)
class Family:
    prunes: bool
    tasks: str | None = None  # None: the demo's own
    depth: int = 8


FAMILIES = {
    "llava_hf_textdom": Family(prunes=True),
    "llava_next_textdom": Family(prunes=True),
    "qwen2_5_vl_textdom": Family(prunes=True),  # MMMU-Pro and MMBench-Video
    "kimi_vl_textdom": Family(prunes=True, depth=4),
    "videollama3_textdom": Family(prunes=True, tasks="mmbench_video_textdom,mmmu_pro_standard_textdom"),
    "qwen2_audio_textdom": Family(prunes=False),
    "chatts_textdom": Family(prunes=False),
    "graphgpt_textdom": Family(prunes=False, tasks="graphgpt_cora_textdom,graphgpt_pubmed_lp_textdom"),
}


@pytest.fixture(scope="session")
def textdom_cache(tmp_path_factory) -> Path:
    """One LMMS_TEXTDOM_CACHE for the session: each embedded default is built once."""
    return tmp_path_factory.mktemp("textdom-cache")


@dataclass
class Run:
    stdout: str
    rows: dict[tuple[str, int], dict]  # (task, doc_id) -> sample-log row
    output: Path


def read_rows(output: Path) -> dict[tuple[str, int], dict]:
    rows = {}
    for log in output.glob("**/*_samples_*.jsonl"):
        task = log.stem.split("_samples_")[1]
        for line in log.read_text().splitlines():
            row = json.loads(line)
            rows[(task, int(row["doc_id"]))] = row
    return rows


@pytest.fixture(scope="session")
def demo_runs(textdom_cache, tmp_path_factory):
    """``runs(model, attention)``: the demo with the common model_args, run once per session and key."""
    done: dict[tuple[str, str], Run] = {}

    def runs(model: str, attention: str) -> Run:
        if (model, attention) not in done:
            family = FAMILIES[model]
            args = EDITS + (f",prune_ratio={RATIO}" if family.prunes else "") + f",attn_implementation={attention}"
            args += f",{RECORDS}" if attention == "sdpa" else ""
            output = tmp_path_factory.mktemp(f"{model}_{attention}")
            command = [sys.executable, "-m", "lmms_textdom", "demo", "--model", model, "--limit", "2",
                       "--gen-kwargs", f"max_new_tokens={NEW_TOKENS}", "--model-args", args, "--output", str(output), *(["--tasks", family.tasks] if family.tasks else [])]  # fmt: skip
            env = dict(os.environ, LMMS_TEXTDOM_CACHE=str(textdom_cache))
            finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
            assert finished.returncode == 0, finished.stderr[-3000:]
            done[(model, attention)] = Run(finished.stdout, read_rows(output), output)
        return done[(model, attention)]

    return runs


def measured(run: Run) -> dict[tuple[str, int], dict]:
    """The rows that carry a textdom record, each as its record plus the answer."""
    found = {key: {**row["textdom"], "answer": row["filtered_resps"][0]} for key, row in run.rows.items() if row.get("textdom")}
    assert found, "no sample carries a textdom record"
    return found


MODELS = list(FAMILIES)


@pytest.mark.parametrize("model", MODELS)
def test_the_demo_runs_offline_and_prints_the_results(model, demo_runs):
    run = demo_runs(model, "sdpa")
    assert f"Embedded default of {model}:" in run.stdout and "RANDOM weights" in run.stdout
    assert "|textdom|" in run.stdout.replace(" ", "")  # lmms-eval's results table
    assert f"lmms-eval --model {model} --model_args pretrained=" in run.stdout  # the real command to run next
    tasks = {task for task, _ in run.rows}
    assert len(tasks) >= 1 and all(len([k for k in run.rows if k[0] == t]) == 2 for t in tasks), "--limit 2 per task"


@pytest.mark.parametrize("model", MODELS)
def test_knockout_layers_cut_the_nontext_mass_of_exactly_those_layers(model, demo_runs):
    for key, record in measured(demo_runs(model, "sdpa")).items():
        stats, settings = record["stats"], record["settings"]
        assert settings["knockout_layers"] == f"{KNOCKED[0]}-{KNOCKED[-1]}", key
        mass, counts = np.array(stats["mass"]), stats["counts"]
        assert mass.shape[0] == FAMILIES[model].depth
        knocked = np.zeros(mass.shape[0], dtype=bool)
        knocked[list(KNOCKED)] = True
        present = [c for c in range(1, len(counts)) if counts[c] > 0]
        assert present, f"{key}: no non-text position"
        assert np.all(mass[knocked][:, present] == 0), key
        assert np.all(mass[~knocked][:, present] > 0), key
        assert np.all(mass[:, 0] > 0), key
        # knockout_score: the answer of the unmasked model, scored with and without the knock-out
        effect = record["knockout"]
        assert 1 <= effect["answer_tokens"] <= NEW_TOKENS and effect["logprob_plain"] < 0 and effect["logprob_knocked"] < 0, key


@pytest.mark.parametrize("model", MODELS)
def test_key_stats_sample_every_layer(model, demo_runs):
    for key, record in measured(demo_runs(model, "sdpa")).items():
        keys, classes = record["key_stats"], record["stats"]["classes"]
        assert record["settings"]["key_stats"] is True and keys["positions"] == 64
        assert len(keys["layers"]) == FAMILIES[model].depth, key
        counts = dict(zip(classes, record["stats"]["counts"]))
        for layer in keys["layers"]:
            sampled = {name for name, coords in layer["coords"].items() if coords}
            assert "text" in sampled and any(counts.get(name, 0) > 0 for name in sampled - {"text"}), key


@pytest.mark.parametrize("model", MODELS)
def test_repeat_multiplies_and_pruning_keeps_its_share_of_every_item(model, demo_runs):
    family = FAMILIES[model]
    for key, record in measured(demo_runs(model, "sdpa")).items():
        settings, counts = record["settings"], record["stats"]["counts"]
        assert (settings["nontext_repeat"], settings["prune_ratio"]) == (REPEAT, RATIO if family.prunes else 0.0)
        assert sum(counts[1:]) == REPEAT * settings["nontext_kept"], key
        if not family.prunes:
            assert settings["nontext_kept"] == settings["nontext_original"] and settings["prune_method"] is None
            continue
        items = settings["nontext_items"]
        assert [sum(column) for column in zip(*items)] == [settings["nontext_original"], settings["nontext_kept"]], key
        for original, kept in items:
            if model == "llava_next_textdom":  # FasterVLM's LLaVA-NeXT: every 25-patch crop keeps its own 13
                assert kept % kept_count(25, RATIO) == 0 and kept < original, key
            else:
                assert kept == kept_count(original, RATIO), key


@pytest.mark.parametrize("model", MODELS)
def test_eager_attention_gives_the_sdpa_masses(model, demo_runs):
    sdpa, eager = measured(demo_runs(model, "sdpa")), measured(demo_runs(model, "eager"))
    assert sdpa.keys() == eager.keys()
    for key, record in sdpa.items():
        other = eager[key]
        assert (record["settings"]["attn_implementation"], other["settings"]["attn_implementation"]) == ("sdpa", "eager")
        assert other["answer"] == record["answer"] and other["stats"]["counts"] == record["stats"]["counts"], key
        np.testing.assert_allclose(other["stats"]["mass"], record["stats"]["mass"], rtol=1e-5, atol=1e-5, err_msg=str(key))


# ----- the smallest inputs: the first document of every task of a default ---------------------------


def first_rows(model: str, demo_runs) -> dict[str, dict]:
    return {task: record for (task, doc), record in measured(demo_runs(model, "sdpa")).items() if doc == 0}


def only_item(settings: dict) -> list[int]:
    (item,) = settings["nontext_items"]
    return item


SMALLEST = {
    # every image becomes the tower's 30 px input: 25 patches, 13 kept
    "llava_hf_textdom": lambda task, s: only_item(s) == [25, 13],
    # FasterVLM's crops of a one-pixel or one-patch image: each crop keeps 13
    "llava_next_textdom": lambda task, s: only_item(s)[1] % 13 == 0,
    # one merged token for an image; a one-frame video's frame taken twice, one temporal patch
    "qwen2_5_vl_textdom": lambda task, s: s["video_frames"] == [[0, 0]] if task == "mmbench_video_textdom" else only_item(s) == [1, 1],
    # padded to 28 px: a 2 x 2 patch grid, one merged token
    "kimi_vl_textdom": lambda task, s: s["image_grids"] == [[2, 2]] and only_item(s) == [1, 1],
    # a one-frame video at fps 1 is one frame
    "videollama3_textdom": lambda task, s: s["video_frames"] == [[0]] if task == "mmbench_video_textdom" else len(s["nontext_items"]) == 1,
    # 321 samples: one audio token
    "qwen2_audio_textdom": lambda task, s: s["audio_tokens"] == [1] and s["nontext_original"] == 1,
    # one sample: one patch
    "chatts_textdom": lambda task, s: s["ts_patch_counts"] == [1] and s["nontext_original"] == 1,
}


@pytest.mark.parametrize("model", list(SMALLEST))
def test_the_smallest_inputs_run_with_every_model_arg(model, demo_runs):
    rows = first_rows(model, demo_runs)
    assert rows, "the first documents carry no textdom record"
    for task, record in rows.items():
        assert SMALLEST[model](task, record["settings"]), (task, record["settings"])
        assert record["stats"]["rows"] > 0 and sum(record["stats"]["counts"][1:]) > 0


def test_a_one_node_graph_runs(textdom_cache, tmp_path):
    """GraphGPT's smallest input: the target node alone, no edges (needs the graph tower to take 0 edges)."""
    from lmms_textdom.tiny.defaults import embedded_setup
    from lmms_textdom.tiny.graph_data import write_graph_snapshot
    from tests.lmms_runs import run_cli, samples_of

    setup = embedded_setup("graphgpt_textdom", textdom_cache)
    data = write_graph_snapshot(tmp_path / "data", smallest_first=True)
    done = run_cli(
        "graphgpt_textdom", f"pretrained={setup.pretrained},{setup.model_args},nontext_repeat={REPEAT}", "graphgpt_cora_textdom",
        tmp_path / "run", data, "--limit", "1", "--gen_kwargs", "max_new_tokens=4",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    (row,) = samples_of(tmp_path / "run", "graphgpt_cora_textdom", key=lambda r: r["doc_id"]).values()
    settings = row["textdom"]["settings"]
    assert settings["graph_nodes"] == [1] and row["textdom"]["stats"]["counts"][1] == REPEAT * 1


# ----- the records hold the settings that ran, one family per kind of input --------------------------


def test_records_hold_the_settings_that_ran(demo_runs, textdom_cache):
    image = measured(demo_runs("kimi_vl_textdom", "sdpa"))
    for record in image.values():
        assert record["settings"]["in_token_limit"] == 64 and record["settings"]["attn_implementation"] == "sdpa"
        assert all(rows >= 1 and cols >= 1 for rows, cols in record["settings"]["image_grids"])
    video = [r for (task, _), r in measured(demo_runs("qwen2_5_vl_textdom", "sdpa")).items() if task == "mmbench_video_textdom"]
    assert video and all((r["settings"]["max_frames"], r["settings"]["video_sampling"]) == (8, "8frame") for r in video)
    assert all(r["settings"]["video_fps"][0] > 0 for r in video)
    for record in measured(demo_runs("qwen2_audio_textdom", "sdpa")).values():
        assert record["settings"]["sampling_rate"] == 16000 and len(record["settings"]["audio_seconds"]) == 1
    for record in measured(demo_runs("chatts_textdom", "sdpa")).values():
        assert (record["settings"]["ts_release"], record["settings"]["ts_patch_size"]) == ("0801", 4)
    tower = str(textdom_cache.resolve() / "defaults" / "graphgpt_textdom" / "checkpoint" / "clip_gt_arxiv_pub")
    for record in measured(demo_runs("graphgpt_textdom", "sdpa")).values():
        assert record["settings"]["graph_tower"] == tower


# ----- attention maps and the sample viewer, on the sdpa runs ----------------------------------------

KINDS = {  # what the viewer draws for each kind of item: (svg class, element of its values)
    "image": ("heatmap", "rect"), "video": ("frame-strip", "rect"), "audio": ("audio-plot", "polyline"),
    "time_series": ("series-plot", "rect"), "graph": ("graph-bars", "rect"),
}  # fmt: skip


@pytest.mark.parametrize("model", MODELS)
def test_attention_maps_sum_to_the_masses_and_place_every_position(model, demo_runs):
    from lmms_textdom.core.attention_maps import AttentionMaps

    for key, record in measured(demo_runs(model, "sdpa")).items():
        maps = AttentionMaps.from_dict(record["attention_maps"])
        mass = np.array(record["stats"]["mass"])
        classes = record["stats"]["classes"]
        assert record["settings"]["attention_maps"] == "steps" and set(maps.quarters) == {"first", "last"}
        for group, layers in maps.layers.items():
            for c, name in enumerate(classes[1:], start=1):
                assert maps.class_sums(group)[name] == pytest.approx(mass[list(layers), c].sum(), rel=1e-5, abs=1e-6), (key, group, name)
        for name in maps.classes:
            assert sum(i["positions"] for i in maps.items if i["class"] == name) == maps.positions(name) == record["stats"]["counts"][classes.index(name)]
        assert set(record["spread"]) == set(maps.groups) and all(0 <= s["top10_share"] <= 1 for s in record["spread"].values() if s["top10_share"] is not None)


def drawn_kinds(dom: str) -> dict[str, int]:
    """Per kind, how many of its figures in the dumped page hold at least one drawn value."""
    from html.parser import HTMLParser

    class Figures(HTMLParser):
        def __init__(self):
            super().__init__()
            self.open: str | None = None
            self.count: dict[str, int] = {}
            self.filled: set = set()

        def handle_starttag(self, tag, attrs):
            attrs = dict(attrs)
            css = (attrs.get("class") or "").split()
            if tag == "svg":
                self.open = next((kind for kind, (name, _) in KINDS.items() if name in css), None)
                self.figure = attrs.get("id")
            elif self.open and tag == KINDS[self.open][1] and ("data-value" in attrs or "data-values" in attrs) and self.figure not in self.filled:
                self.filled.add(self.figure)
                self.count[self.open] = self.count.get(self.open, 0) + 1

        def handle_endtag(self, tag):
            if tag == "svg":
                self.open = None

    parser = Figures()
    parser.feed(dom)
    return parser.count


def test_report_samples_draws_every_kind_in_chromium(demo_runs, tmp_path):
    """``lmms-textdom report --samples 5`` over every family's run: Chromium renders heatmaps for images,
    strips for video, curves for audio and time series and bars for graphs."""
    import shutil
    from concurrent.futures import ThreadPoolExecutor

    from tests.test_report import report

    outputs = [demo_runs(model, "sdpa").output for model in MODELS]
    status, _, stderr = report(*outputs, "--out", tmp_path / "report", "--samples", "5", "--resamples", "0", "--no-figures")
    assert status == 0, stderr
    pages = sorted((tmp_path / "report" / "viewer").glob("*.html"))
    assert len(pages) >= len(MODELS)
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    assert browser, "chromium is missing: run scripts/ensure-chromium.sh"

    def dump(numbered):
        number, page = numbered
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run", f"--user-data-dir={tmp_path / str(number)}"]
        done = subprocess.run([browser, *flags, "--dump-dom", page.resolve().as_uri() + "#group=middle"], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        return drawn_kinds(done.stdout)

    with ThreadPoolExecutor(2) as pool:
        per_page = list(pool.map(dump, enumerate(pages)))
    assert all(per_page), [p.name for p, kinds in zip(pages, per_page) if not kinds]
    totals = {kind: sum(kinds.get(kind, 0) for kinds in per_page) for kind in KINDS}
    assert all(totals.values()), totals
