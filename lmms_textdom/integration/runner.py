"""Running the real lmms-eval CLI from our commands: the command line, an offline environment, checked results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from lmms_textdom.integration.data import ENV

DEFAULT_CACHE = Path(os.environ.get("LMMS_TEXTDOM_CACHE", ".textdom-cache"))


def offline_env(data_root: Path | None = None) -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    if data_root is not None:
        env[ENV] = str(Path(data_root).resolve())
    return env


def lmms_eval_command(model: str, model_args: str, tasks: str, output: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "lmms_eval",
        "--model", model, "--model_args", model_args, "--tasks", tasks,
        "--device", "cpu", "--output_path", str(output), "--log_samples", *extra,
    ]  # fmt: skip


def latest_results(output: Path) -> Path | None:
    """lmms-eval writes ``<output>/<model name>/<date>_results.json``; the newest one, if any."""
    found = sorted(Path(output).glob("**/*_results.json"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def run_checked(command: list[str], env: dict[str, str], output: Path, quiet: bool = False) -> dict:
    """Run lmms-eval and return its results JSON; lmms-eval exits 0 even when a run fails, so check.

    ``quiet`` keeps lmms-eval's own output back unless the run fails.
    """
    before = latest_results(output)
    done = subprocess.run(command, env=env, capture_output=quiet, text=True)
    results = latest_results(output)
    if done.returncode != 0 or results is None or results == before:
        if quiet:
            sys.stderr.write((done.stdout or "")[-4000:] + (done.stderr or "")[-8000:])
        raise SystemExit(f"lmms-eval did not produce results (exit status {done.returncode}); see its log above")
    return json.loads(results.read_text())
