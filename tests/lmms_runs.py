"""Running the real lmms-eval CLI in a subprocess and reading what it wrote."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from lmms_textdom.integration.runner import latest_results, lmms_eval_command, offline_env
from tests.chat_server import Answer, ChatServer


def run_cli(model: str, model_args: str, tasks: str, output: Path, data_root: Path | None, *extra: str, launcher=()):
    command = lmms_eval_command(model, model_args, tasks, output, *extra)
    if launcher:
        command = [*launcher, *command[1:]]  # e.g. torchrun ... -m lmms_eval ...
    return subprocess.run(command, env=offline_env(data_root), capture_output=True, text=True, timeout=600)


def run_cli_ok(model: str, model_args: str, tasks: str, output: Path, data_root: Path | None, *extra: str) -> Path:
    """Run the CLI, insist that it succeeded, and return the output folder."""
    done = run_cli(model, model_args, tasks, output, data_root, *extra)
    assert done.returncode == 0, done.stderr[-3000:]
    return output


def results_of(output: Path) -> dict:
    path = latest_results(output)
    assert path is not None, f"lmms-eval wrote no results under {output}"
    return json.loads(path.read_text())


def samples_of(output: Path, task: str, key=lambda row: row["mmmu_acc"]["id"]) -> dict:
    """The sample log of ``task``, keyed by ``key(row)``, by default the MMMU-Pro question id (logs come
    ordered by rank, not doc)."""
    (path,) = sorted(Path(output).glob(f"**/*_samples_{task}.jsonl"))
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return {key(row): row for row in rows}


def build_task(name: str):
    """One of our tasks built in-process by lmms-eval's TaskManager (process_docs included)."""
    from lmms_eval.tasks import TaskManager, get_task_dict

    from lmms_textdom.integration.registry import tasks_dir

    manager = TaskManager("WARNING", include_path=str(tasks_dir()), include_defaults=False)
    return get_task_dict([name], manager)[name]


def judged_runs(model: str, pretrained, task: str, output: Path, data_root: Path, score: str, *extra: str) -> dict:
    """One plain run and one pruned + replicated run of a video ``task``, judged by a loopback server
    that answers ``score``: {"plain": folder, "edited": folder, "<name>_log": CLI output, "judge_requests": n}."""
    with ChatServer(lambda body: Answer(score)) as server, pytest.MonkeyPatch.context() as env:
        env.setenv("LMMS_TEXTDOM_JUDGE_BASE_URL", server.url)
        env.setenv("LMMS_TEXTDOM_JUDGE_MODEL", "judge-under-test")
        env.setenv("LMMS_TEXTDOM_JUDGE_CACHE", str(output / "judge-cache"))
        runs = {}
        for name, args in (("plain", ""), ("edited", ",prune_ratio=0.5,nontext_repeat=2")):
            done = run_cli(model, f"pretrained={pretrained}{args}", task, output / name, data_root, *extra)
            assert done.returncode == 0, done.stderr[-3000:]
            runs[name] = output / name
            runs[f"{name}_log"] = done.stdout + done.stderr
        runs["judge_requests"] = server.count
    return runs
