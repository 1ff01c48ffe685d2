"""``lmms-textdom measure`` on real lmms-eval logs of the tiny LLaVA: our plain run, lmms-eval's stock
``llava_hf`` on a stock task, fabricated variants of them; two processes, resume, report, bad inputs."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from lmms_textdom.cli import main
from lmms_textdom.core.stats import SampleStats
from lmms_textdom.integration.data import ENV
from lmms_textdom.integration.runner import lmms_eval_command, offline_env
from lmms_textdom.models.base import TextdomModel
from lmms_textdom.models.llava.adapter import LlavaHfTextdom
from lmms_textdom.tiny.lmms_eval_data import write_lmms_eval_cache
from tests.lmms_runs import results_of
from tests.test_forced_probe import assert_same_record

TASK = "mmmu_pro_standard_textdom"
MODEL = "llava_hf_textdom"
MAX_NEW_TOKENS = 64  # the task's


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory):
    return write_lmms_eval_cache(tmp_path_factory.mktemp("hf_datasets"))


@pytest.fixture(scope="module")
def env(mmmu_data_root, hub_cache):
    """What every run here needs: the fabricated MMMU-Pro snapshot and lmms-eval's fabricated datasets cache."""
    return {**offline_env(mmmu_data_root), "HF_DATASETS_CACHE": str(hub_cache), "LMMS_EVAL_DATASETS_CACHE": str(hub_cache)}


@pytest.fixture(scope="module")
def logs(tiny_llava_dir, env, tmp_path_factory):
    """lmms-eval runs with --log_samples: ours with and without textdom, and the stock llava_hf on mme."""
    root = tmp_path_factory.mktemp("logs")
    ckpt = f"pretrained={tiny_llava_dir}"
    runs = {
        "generated": (MODEL, ckpt, TASK, "--batch_size", "2"),
        "plain": (MODEL, f"{ckpt},textdom=false", TASK, "--batch_size", "2"),
        "stock": ("llava_hf", f"{ckpt},device_map=cpu,dtype=float32", "mme", "--limit", "4"),
    }

    def run(name):
        model, args, task, *extra = runs[name]
        done = subprocess.run(lmms_eval_command(model, args, task, root / name, *extra), env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0 and list((root / name).glob("**/*_results.json")), done.stderr[-3000:]
        return name, root / name

    with ThreadPoolExecutor(len(runs)) as pool:
        return dict(pool.map(run, runs))


@contextlib.contextmanager
def environment(env):
    # lmms-eval resolves its datasets cache once per process (an lru_cache): an earlier in-process task build
    # would pin it to the default cache, where the fabricated mme rows are not, so forget it on both sides.
    from lmms_eval.api.task import _resolve_hf_datasets_cache_dir

    with pytest.MonkeyPatch.context() as mp:
        for key in (ENV, "LMMS_EVAL_DATASETS_CACHE"):
            mp.setenv(key, env[key])
        _resolve_hf_datasets_cache_dir.cache_clear()
        try:
            yield mp
        finally:
            _resolve_hf_datasets_cache_dir.cache_clear()


def measure(env, *argv) -> tuple[int, str]:
    """``lmms-textdom measure ...`` in-process: (exit status, stderr)."""
    err = io.StringIO()
    with environment(env), contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            main(["measure", *map(str, argv)])
            code = 0
        except SystemExit as exc:
            code = exc.code
    return code, err.getvalue()


def measure_ok(env, *argv) -> Path:
    code, err = measure(env, *argv)
    assert code == 0, err[-3000:]
    return Path(argv[argv.index("--output_path") + 1])


def samples(folder: Path, task: str = TASK) -> dict[int, dict]:
    (path,) = sorted(Path(folder).glob(f"**/*_samples_{task}.jsonl"))
    return {row["doc_id"]: row for row in map(json.loads, path.read_text().splitlines())}


def stats(row: dict) -> SampleStats:
    return SampleStats.from_dict(row["textdom"]["stats"])


@pytest.fixture(scope="module")
def measured(logs, env, tiny_llava_dir, tmp_path_factory):
    """The plain run measured at batch 2 (padded prompts and answers) and at batch 1."""
    out = tmp_path_factory.mktemp("measured")
    args = ("--model", MODEL, "--model_args", f"pretrained={tiny_llava_dir}")
    return {
        "b2": measure_ok(env, logs["plain"], *args, "--batch_size", 2, "--output_path", out / "b2"),
        "b1": measure_ok(env, logs["plain"], *args, "--output_path", out / "b1"),
    }


@pytest.mark.parametrize("batch", ["b1", "b2"])
def test_measuring_a_plain_run_gives_the_generate_run(logs, measured, batch):
    generated, got = samples(logs["generated"]), samples(measured[batch])
    assert got.keys() == generated.keys() and len(got) == 6
    for doc_id, row in got.items():
        assert_same_record(stats(row), stats(generated[doc_id]))
        assert row["mmmu_acc"] == generated[doc_id]["mmmu_acc"]
        settings = row["textdom"]["settings"]
        assert settings["answer_tokens"] == "logged_ids" and settings["probe_path"] == "teacher_forced"
        assert settings["measured_from"]["model_args"].endswith("textdom=false")
        assert row["textdom"]["answer"] == {"tokens": stats(row).rows, "finish_reason": "length"}
    mine, theirs = results_of(measured[batch])["results"][TASK], results_of(logs["generated"])["results"][TASK]
    assert mine["mmmu_acc,none"] == theirs["mmmu_acc,none"] and mine["textdom,none"] == theirs["textdom,none"] == 6
    for key in (k for k in theirs if k.startswith(("mdi_", "aei_")) and "_stderr" not in k):
        assert mine[key] == pytest.approx(theirs[key], rel=1e-5), key


def free_port() -> int:
    """A port nobody listens on now (other test sessions on this machine launch torchrun too)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_processes_give_what_one_gives(logs, measured, env, tiny_llava_dir, tmp_path):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    command = [
        torchrun, "--nproc_per_node", "2", "--master_port", str(free_port()), "-m", "lmms_textdom", "measure", str(logs["plain"]),
        "--model", MODEL, "--model_args", f"pretrained={tiny_llava_dir}", "--output_path", str(tmp_path), "--device", "cpu",
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    two, one = samples(tmp_path), samples(measured["b1"])
    assert two.keys() == one.keys()
    for doc_id in one:
        assert_same_record(stats(two[doc_id]), stats(one[doc_id]))
    assert results_of(tmp_path)["results"][TASK]["textdom,none"] == 6


def test_an_interrupted_measure_goes_on_where_it_stopped(logs, measured, env, tiny_llava_dir, tmp_path, monkeypatch):
    calls, interrupt = [], [True]
    original = TextdomModel.measure_batch

    def interrupted_after_one_batch(self, batch, *args, **kwargs):
        calls.append(len(batch))
        if len(calls) == 2 and interrupt and interrupt.pop():
            raise KeyboardInterrupt
        return original(self, batch, *args, **kwargs)

    monkeypatch.setattr(TextdomModel, "measure_batch", interrupted_after_one_batch)
    args = (logs["plain"], "--model", MODEL, "--model_args", f"pretrained={tiny_llava_dir}", "--batch_size", 2, "--output_path", tmp_path)
    with pytest.raises(KeyboardInterrupt):
        measure(env, *args)
    (progress,) = tmp_path.glob(".measure_progress/*/rank0.jsonl")
    assert len(progress.read_text().splitlines()) == 2 and not list(tmp_path.glob("**/*_results.json"))
    with progress.open("a") as torn:  # a line the interruption cut off: that sample is measured again
        torn.write('{"doc_id": 5, "targ')
    calls.clear()
    measure_ok(env, *args)
    assert calls == [2, 2], "only the 4 samples left are measured"
    assert not (tmp_path / ".measure_progress").exists()
    resumed, whole = samples(tmp_path), samples(measured["b2"])
    assert resumed.keys() == whole.keys()
    for doc_id in whole:
        assert_same_record(stats(resumed[doc_id]), stats(whole[doc_id]))


def test_stock_llava_hf_logs_of_a_stock_task_are_measured_through_its_twin(logs, env, tiny_llava_dir, tmp_path):
    from transformers import AutoTokenizer

    out = measure_ok(env, logs["stock"], "--model", MODEL, "--model_args", f"pretrained={tiny_llava_dir}", "--output_path", tmp_path)
    rows, logged = samples(out, "mme_textdom"), samples(logs["stock"], "mme")
    assert rows.keys() == logged.keys() and len(rows) == 4
    tok = AutoTokenizer.from_pretrained(tiny_llava_dir)
    for doc_id, row in rows.items():
        answer, text = row["textdom"]["answer"], logged[doc_id]["filtered_resps"]
        ids = tok.encode(text, add_special_tokens=False)
        assert row["textdom"]["settings"]["answer_tokens"] == "retokenized"
        assert answer["round_trip"] == (tok.decode(ids, skip_special_tokens=True) == text)
        # mme generates at most 16 tokens: shorter answers stopped by themselves (an EOS row), others hit the limit
        assert (answer["finish_reason"], answer["tokens"]) == (("eos_assumed", len(ids) + 1) if len(ids) < 16 else ("length_assumed", len(ids)))
        assert stats(row).rows == answer["tokens"]
        scores = [key for key in logged[doc_id] if key.startswith("mme_")]
        assert scores and all(row[key] == logged[doc_id][key] for key in scores)
    results = results_of(out)
    assert results["results"]["mme_textdom"]["textdom,none"] == 4
    assert results["config"]["measured_from"]["mme_textdom"]["model"] == "llava_hf"


def rewrite_log(source: Path, target: Path, edit) -> Path:
    """A copy of a run's output folder whose sample lines went through ``edit(row) -> row``."""
    shutil.copytree(source, target)
    (log,) = target.glob("**/*_samples_*.jsonl")
    log.write_text("".join(json.dumps(edit(row)) + "\n" for row in map(json.loads, log.read_text().splitlines())))
    return target


def test_text_only_answers_follow_the_stated_rules(logs, env, tiny_llava_dir, tmp_path):
    """A text shorter than max_new_tokens is measured as ending with EOS (so is one a stop string was cut
    from), a text of max_new_tokens tokens as cut by the limit: each exactly like those ids logged."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llava_dir)
    eos = LlavaHfTextdom.MODEL_CLASS.from_pretrained(tiny_llava_dir).generation_config.eos_token_id
    short = "the answer is b"
    limit = tok.encode(" ".join([short] * 40), add_special_tokens=False)[:MAX_NEW_TOKENS]
    texts = {"short": short, "limit": tok.decode(limit)}
    ids = {"short": tok.encode(short, add_special_tokens=False) + [eos], "limit": limit}
    assert tok.encode(texts["limit"], add_special_tokens=False) == limit

    def text_only(row, text):
        counts = row["token_counts"][0]
        return {**row, "filtered_resps": text, "token_counts": [{"input_tokens": counts["input_tokens"], "output_tokens": 1}]}

    def logged(row, answer):
        return {**row, "token_counts": [{**row["token_counts"][0], "output_ids": answer, "finish_reason": "eos"}]}

    folders = []
    for name in texts:
        folders += [rewrite_log(logs["plain"], tmp_path / f"text_{name}", lambda r, t=texts[name]: text_only(r, t))]
        folders += [rewrite_log(logs["plain"], tmp_path / f"ids_{name}", lambda r, a=ids[name]: logged(r, a))]
    out = measure_ok(env, *folders, "--model", MODEL, "--model_args", f"pretrained={tiny_llava_dir}", "--limit", 2, "--output_path", tmp_path / "out")
    runs = {}
    for results in sorted(out.glob("**/*_results.json")):
        log = Path(results_of_file(results)["config"]["measured_from"][TASK]["log"])
        runs[log.parents[1].name] = samples_of_results(results)
    assert sorted(runs) == ["ids_limit", "ids_short", "text_limit", "text_short"]
    for name, (tokens, ending) in {"short": (len(ids["short"]), "eos_assumed"), "limit": (MAX_NEW_TOKENS, "length_assumed")}.items():
        for doc_id, row in runs[f"text_{name}"].items():
            assert row["textdom"]["settings"]["answer_tokens"] == "retokenized"
            assert row["textdom"]["answer"] == {"tokens": tokens, "finish_reason": ending, "round_trip": True, "over_limit": False}
            assert_same_record(stats(row), stats(runs[f"ids_{name}"][doc_id]))


def results_of_file(path: Path) -> dict:
    return json.loads(path.read_text())


def samples_of_results(results: Path) -> dict[int, dict]:
    date = results.name[: -len("_results.json")]
    (log,) = results.parent.glob(f"{date}_samples_*.jsonl")
    return {row["doc_id"]: row for row in map(json.loads, log.read_text().splitlines())}


def test_report_shows_measured_and_generated_runs_side_by_side(logs, measured, tmp_path):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        main(["report", str(logs["generated"]), str(measured["b2"]), "--out", str(tmp_path / "report")])
    rows = [line for line in out.getvalue().splitlines() if "mmmu_pro_standard" in line]
    assert len(rows) == 2 and sum("measured (logged_ids)" in line for line in rows) == 1, out.getvalue()


def test_a_progress_bar_on_a_terminal_only(logs, env, tiny_llava_dir, tmp_path, monkeypatch):
    args = (logs["plain"], "--model", MODEL, "--model_args", f"pretrained={tiny_llava_dir}", "--limit", 2)
    code, quiet = measure(env, *args, "--output_path", tmp_path / "quiet")
    assert code == 0 and "lmms-textdom measure:" not in quiet and "sample/s" not in quiet

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    terminal = Terminal()
    with environment(env), contextlib.redirect_stderr(terminal), contextlib.redirect_stdout(io.StringIO()):
        monkeypatch.setattr(sys, "stderr", terminal)
        main(["measure", *map(str, args), "--output_path", str(tmp_path / "tty")])
    assert "lmms-textdom measure: 100%" in terminal.getvalue() and "2/2" in terminal.getvalue()


# ----- bad inputs: a clear error before any model loads ---------------------------------------------------------


def results_only(logs, tmp_path):
    target = tmp_path / "no_samples"
    shutil.copytree(logs["plain"], target)
    for log in target.glob("**/*_samples_*.jsonl"):
        log.unlink()
    return target


def renamed_task(logs, tmp_path, task):
    target = tmp_path / task
    shutil.copytree(logs["plain"], target)
    (log,) = target.glob("**/*_samples_*.jsonl")
    log.rename(log.with_name(log.name.replace(TASK, task)))
    return target


BAD = {
    "no --log_samples": (results_only, (), "made without --log_samples"),
    "task not installed": (lambda logs, tmp: renamed_task(logs, tmp, "no_such_task"), (), "the log's task 'no_such_task' is not installed"),
    "doc_id missing": (
        lambda logs, tmp: rewrite_log(logs["plain"], tmp / "doc", lambda r: {**r, "doc_id": r["doc_id"] + 94}),
        (), "doc_id 94 is not in 'mmmu_pro_standard_textdom' here (its test split has 6 documents",
    ),
    "another model": (lambda logs, tmp: logs["plain"], ("--model_args", "pretrained=llava-hf/llava-1.5-7b-hf"), "or pass --forced"),
    "loglikelihood task": (
        lambda logs, tmp: renamed_task(logs, tmp, "egoschema_mcppl"), (), "comes from a multiple_choice task, which scores given answers",
    ),
    "another prompt": (
        lambda logs, tmp: rewrite_log(logs["plain"], tmp / "prompt", lambda r: {**r, "input": "another question"}),
        (), "the logged prompt of doc_id 0 is not the one",
    ),
    "other family settings": (lambda logs, tmp: logs["plain"], ("--model_args", "{ckpt},prune_ratio=0.5"), "was generated with prune_ratio=0.0 (here 0.5)"),
    "generate-only analysis": (lambda logs, tmp: logs["plain"], ("--model_args", "{ckpt},knockout_layers=1"), "model_arg knockout_layers works on generate runs only"),
    "textdom=false": (lambda logs, tmp: logs["plain"], ("--model_args", "{ckpt},textdom=false"), "measure always measures"),
    "batch_size in model_args": (lambda logs, tmp: logs["plain"], ("--model_args", "{ckpt},batch_size=2"), "pass batch_size as --batch_size"),
    "unknown model": (lambda logs, tmp: logs["plain"], ("--model", "llava_hf"), "unknown model 'llava_hf'"),
    "no such path": (lambda logs, tmp: tmp / "nowhere", (), "does not exist"),
    "no log of --tasks": (lambda logs, tmp: logs["plain"], ("--tasks", "mme"), "none of the logs is of those tasks; the logs hold mmmu_pro_standard_textdom"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_named_before_the_model_loads(case, logs, env, tiny_llava_dir, tmp_path, monkeypatch):
    make, extra, message = BAD[case]
    monkeypatch.setattr(LlavaHfTextdom, "load", lambda self: pytest.fail("the model loaded before the error"))
    extra = tuple(a.format(ckpt=f"pretrained={tiny_llava_dir}") for a in extra)
    args = {"--model": MODEL, "--model_args": f"pretrained={tiny_llava_dir}", "--output_path": str(tmp_path / "out")}
    args.update(zip(extra[::2], extra[1::2]))
    code, err = measure(env, make(logs, tmp_path), *(x for pair in args.items() for x in pair))
    assert code == 2 and "lmms-textdom measure: error:" in err and message in err, err[-2000:]
    assert not list((tmp_path / "out").glob("**/*_results.json"))


def test_another_prompt_is_measured_when_forced(logs, env, tiny_llava_dir, tmp_path):
    changed = rewrite_log(logs["plain"], tmp_path / "prompt", lambda r: {**r, "input": "another question"} if r["doc_id"] == 0 else r)
    out = measure_ok(env, changed, "--model", MODEL, "--model_args", f"pretrained={tiny_llava_dir}", "--forced", "--limit", 2, "--output_path", tmp_path / "o")
    rows = samples(out)
    assert sorted(rows) == [0, 1] and {r["textdom"]["settings"]["answer_tokens"] for r in rows.values()} == {"forced"}
    assert np.isfinite(rows[1]["mdi_early"])
