"""lmms-eval sample logs as ``lmms-textdom measure`` reads them (plain JSON, no lmms-eval import).

An lmms-eval run with ``--output_path P --log_samples`` writes ``P/<model>/<date>_results.json`` and
one ``<date>_samples_<task>.jsonl`` per task beside it. Each line holds ``doc_id``, ``input`` (the
task's context string), ``filtered_resps`` (what ``process_results`` saw), ``resps`` (only when
it differs), ``token_counts`` (from the model's ``GenerationResult``; our plain runs put the answer's
token ids and ending there: ``models/answer_log.py``) and the task's own per-sample keys. The
results file beside it says which model made the answers (``config.model``, ``config.model_args``)
and with which generation settings (``configs.<task>.generation_kwargs``, ``config.gen_kwargs``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from lmms_textdom.core.errors import UsageError

RESULTS_SUFFIX = "_results.json"
SAMPLES_INFIX = "_samples_"
#: model_args keys that name the checkpoint, by backend: HF wrappers, vLLM / SGLang, others
CHECKPOINT_KEYS = ("pretrained", "model", "model_version", "model_name", "model_id", "model_path", "path")
#: lmms-eval 0.7.3's vLLM backends generate up to the larger of the task's max_new_tokens and their own
#: model_arg max_new_tokens (default 4096 in the chat class that --model vllm resolves to)
LARGER_LIMIT_BACKENDS = {"vllm": 4096, "vllm_generate": 4096}
#: keys of the logged token counts that our plain runs add (models/answer_log.py; no lmms-eval import here)
OUTPUT_IDS, FINISH_REASON = "output_ids", "finish_reason"


def parse_model_args(model_args: Any) -> dict[str, str]:
    """lmms-eval's ``key=value,...`` model_args (or an already parsed dict) as strings."""
    if isinstance(model_args, dict):
        return {str(k): str(v) for k, v in model_args.items()}
    pairs = (item.split("=", 1) for item in str(model_args or "").split(",") if "=" in item)
    return {key.strip(): value.strip() for key, value in pairs}


def same_checkpoint(a: str | None, b: str | None) -> bool:
    """Whether two checkpoint names point at the same checkpoint (hub ids equal, or the same folder)."""
    if not a or not b:
        return False
    if a == b:
        return True
    pa, pb = Path(a).expanduser(), Path(b).expanduser()
    return pa.exists() and pb.exists() and pa.resolve() == pb.resolve()


@dataclass
class SampleLog:
    """One ``*_samples_<task>.jsonl`` and the results file of its run."""

    path: Path
    task: str
    results_path: Path
    results: dict[str, Any]
    _samples: list[dict] | None = field(default=None, repr=False)

    @property
    def model(self) -> str:
        return str(self.results.get("config", {}).get("model", ""))

    @property
    def model_args(self) -> Any:
        return self.results.get("config", {}).get("model_args", "")

    @property
    def checkpoint(self) -> str | None:
        """The checkpoint that produced the answers, as the log's model_args name it (None if they do not)."""
        args = parse_model_args(self.model_args)
        return next((args[k] for k in CHECKPOINT_KEYS if args.get(k)), None)

    @property
    def measured_from(self) -> dict[str, Any]:
        return {"model": self.model, "model_args": self.model_args, "log": str(self.path.resolve())}

    def generation_kwargs(self) -> dict[str, Any]:
        """The generation settings the answers were made with: the task's, then the run's --gen_kwargs."""
        task_config = (self.results.get("configs") or {}).get(self.task) or {}
        out = dict(task_config.get("generation_kwargs") or {})
        overrides = self.results.get("config", {}).get("gen_kwargs")
        if isinstance(overrides, dict):
            out.update(overrides)
        return out

    def max_new_tokens(self) -> int | None:
        """The most tokens an answer of this run could have: the task's limit, or the backend's own."""
        task = self.generation_kwargs().get("max_new_tokens")
        own = parse_model_args(self.model_args).get("max_new_tokens")
        task = int(task) if task is not None else None
        own = int(float(own)) if own is not None else None
        if self.model in LARGER_LIMIT_BACKENDS:
            return max(task or 0, own or LARGER_LIMIT_BACKENDS[self.model])
        return task if task is not None else own

    @property
    def samples(self) -> list[dict]:
        if self._samples is None:
            self._samples = read_samples(self.path)
        return self._samples


def read_samples(path: Path) -> list[dict]:
    rows = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise UsageError(f"{path}: line {number} is not JSON ({exc}); the log looks cut off") from None
            if not isinstance(row, dict) or not isinstance(row.get("doc_id"), int):
                raise UsageError(f"{path}: line {number} is not an lmms-eval sample (no integer doc_id)")
            rows.append(row)
    if not rows:
        raise UsageError(f"{path} holds no samples")
    return rows


def task_of(log: Path) -> str:
    return log.name.split(SAMPLES_INFIX, 1)[1][: -len(".jsonl")]


def results_of(log: Path) -> Path:
    return log.with_name(log.name.split(SAMPLES_INFIX, 1)[0] + RESULTS_SUFFIX)


def _read_results(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path} is not a readable lmms-eval results file ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("config"), dict):
        raise UsageError(f"{path} is not an lmms-eval results file (no 'config' section)")
    return data


def find_sample_logs(paths: Iterable[str | os.PathLike]) -> list[SampleLog]:
    """The sample logs under the given output folders, or the given ``*_samples_<task>.jsonl`` files."""
    logs: dict[Path, None] = {}
    for given in map(Path, paths):
        if not given.exists():
            raise UsageError(f"{given} does not exist; pass an lmms-eval --output_path folder or a *_samples_<task>.jsonl file")
        if given.is_dir():
            found = sorted(p for p in given.rglob(f"*{SAMPLES_INFIX}*.jsonl") if ".measure_progress" not in p.parts)
            if not found:
                runs = sorted(given.rglob(f"*{RESULTS_SUFFIX}"))
                if runs:
                    raise UsageError(
                        f"{given} holds lmms-eval results ({runs[0].name}) but no sample logs: the run was made without "
                        "--log_samples, so its answers are not there to measure. Run lmms-eval again with --log_samples."
                    )
                raise UsageError(f"{given} holds no lmms-eval sample logs (*{SAMPLES_INFIX}<task>.jsonl)")
        elif SAMPLES_INFIX in given.name and given.suffix == ".jsonl":
            found = [given]
        elif given.name.endswith(RESULTS_SUFFIX):
            raise UsageError(
                f"{given} is a results file; measure reads the answers from the sample logs beside it "
                f"(*{SAMPLES_INFIX}<task>.jsonl, written with --log_samples): pass the folder or those files"
            )
        else:
            raise UsageError(f"{given} is not an lmms-eval output: pass a folder or a *{SAMPLES_INFIX}<task>.jsonl file")
        for log in found:
            logs.setdefault(log.resolve())
    out = []
    for log in logs:
        results = results_of(log)
        if not results.is_file():
            raise UsageError(f"{log} has no results file beside it ({results.name}); measure needs it to know which model answered")
        out.append(SampleLog(log, task_of(log), results, _read_results(results)))
    return out
