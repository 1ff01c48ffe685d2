"""Reading lmms-eval outputs into runs: one run per task (or group) of a results file.

lmms-eval writes ``<output_path>/<model>/<date>_results.json`` and, with ``--log_samples``,
``<date>_samples_<task>.jsonl`` beside it. A run holds what the report needs of one task: who ran it
(adapter, checkpoint, settings), its accuracy from the results file, and the per-sample
``SampleStats`` from the sample log. Files that cannot be read are skipped with a note naming them;
the run then keeps what its results file says.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from lmms_textdom.analysis.layers import format_layers, parse_layers
from lmms_textdom.core.errors import UsageError
from lmms_textdom.integration.hook import DETAIL, FAILED, METRIC_NAMES, PER_SAMPLE
from lmms_textdom.mitigations.settings import SWITCH_ARGS, switch_settings
from lmms_textdom.progress import progress_bar
from lmms_textdom.provenance import LIBRARIES
from lmms_textdom.core.stats import SampleStats

RESULTS_SUFFIX = "_results.json"
SAMPLES_INFIX = "_samples_"
#: Settings that never tell runs apart: those describing one sample in logs older than the record's
#: own list of them (``per_sample_settings``), ``probe_path`` (how the probe computed the rows) and
#: ``attention_maps`` (what else was recorded): the same numbers either way.
PER_SAMPLE_SETTINGS = ("nontext_original", "nontext_kept", "probe_path", "attention_maps")
#: Run settings that older logs lack, with their meaning when absent: no pruning, no replication.
DEFAULT_SETTINGS = {"prune_method": None, "prune_ratio": 0.0, "nontext_repeat": 1, "knockout_layers": None, "key_stats": False}
#: Sample logs larger than this in total get a progress bar (on a terminal) without being asked.
LARGE_INPUT_BYTES = 50e6
TEXTDOM_RESULTS = frozenset((*METRIC_NAMES, DETAIL, FAILED))
#: what a textdom sample records of the code that measured it
PROVENANCE_KEYS = ("lmms_textdom", "lmms_textdom_commit", *LIBRARIES)


class ReadError(Exception):
    """A file that is not, or no longer, a readable lmms-eval output; the message says why."""


@dataclass
class Run:
    """One task (or group of tasks) of one results file."""

    task: str
    leaves: tuple[str, ...]  # the tasks whose samples it holds: itself, or a group's members
    results_file: Path
    date: str
    adapter: str  # lmms-eval's --model
    pretrained: str
    settings: dict[str, Any]  # run settings other than adapter and checkpoint, defaults filled in
    measured: bool  # the results file holds MDI/AEI for it
    accuracy: float | None
    accuracy_metric: str | None
    evaluated: int | None  # samples evaluated
    logged: dict[str, float | None]  # the results file's own MDI/AEI (mean of per-sample) and count
    samples: list[SampleStats] | None  # None without a readable sample log
    provenance: dict[str, Any]  # plugin and library versions (from the sample log), model_args, generation kwargs, date
    spreads: list[dict | None] | None = None  # per sample, the attention maps' spread numbers (attention_maps=true), else None

    @property
    def is_group(self) -> bool:
        return self.leaves != (self.task,)

    def sample_log(self, task: str) -> Path:
        """The sample log of ``task`` (one of ``leaves``) beside the results file."""
        return sample_log_of(self.results_file, task)


@dataclass
class SampleLog:
    samples: list[SampleStats]
    settings: dict[str, Any]
    provenance: dict[str, Any]  # the first sample's: which code measured it (empty in older logs)
    spreads: list[dict | None]  # per sample: its record's spread numbers, None without attention maps


@dataclass
class Loaded:
    runs: list[Run]
    notes: list[str]


def settings_key(settings: dict[str, Any], leave_out: Iterable[str] = ()) -> str:
    """A canonical text of ``settings`` (less ``leave_out``) for telling runs apart."""
    skip = set(leave_out)
    return json.dumps(sorted((k, v) for k, v in settings.items() if k not in skip), default=str)


def parse_model_args(model_args: Any) -> dict[str, Any]:
    """lmms-eval's ``key=value,key=value`` string (or an already parsed dict)."""
    if isinstance(model_args, dict):
        return dict(model_args)
    pairs = (item.split("=", 1) for item in str(model_args or "").split(",") if "=" in item)
    return {key.strip(): value.strip() for key, value in pairs}


def run_settings(raw: dict[str, Any]) -> dict[str, Any]:
    """Run-level settings with the pruning / replication defaults, typed alike from logs and model_args."""
    settings = {k: v for k, v in raw.items() if k not in (*PER_SAMPLE_SETTINGS, "model", "pretrained")}
    for key, default in DEFAULT_SETTINGS.items():
        settings.setdefault(key, default)
    if str(settings["prune_method"]).lower() in ("", "none", "null"):
        settings["prune_method"] = None
    settings["prune_ratio"] = float(settings["prune_ratio"])
    settings["nontext_repeat"] = int(settings["nontext_repeat"])
    if str(settings["knockout_layers"]).strip().lower() in ("", "none", "null"):
        settings["knockout_layers"] = None
    elif str(settings["knockout_layers"]).strip().lower() != "all":  # model_args text reads like the logged one
        settings["knockout_layers"] = format_layers(parse_layers(settings["knockout_layers"], 1 << 16))
    settings["key_stats"] = str(settings["key_stats"]).lower() in ("true", "1")
    switches = switch_settings(settings)  # typed alike from logs and model_args; neutral values left out
    for key in SWITCH_ARGS:
        settings.pop(key, None)
    settings.update(switches)
    return settings


def headline_metric(cells: dict[str, Any]) -> tuple[str | None, float | None]:
    """The task's own first metric in its results entry (e.g. ``mmmu_acc``), and its value."""
    for key, value in cells.items():
        name, comma, _ = key.partition(",")
        if not comma or "_stderr" in name or name in TEXTDOM_RESULTS:
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return name, float(value)
    return None, None


def number_or_none(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def sample_log_of(results_file: Path, task: str) -> Path:
    return results_file.with_name(f"{results_file.name[: -len(RESULTS_SUFFIX)]}{SAMPLES_INFIX}{task}.jsonl")


def results_file_of(sample_log: Path) -> Path:
    return sample_log.with_name(sample_log.name.split(SAMPLES_INFIX)[0] + RESULTS_SUFFIX)


def find_results_files(paths: Iterable[str | Path], notes: list[str]) -> list[Path]:
    """Results files under the given folders, or the given files themselves (or those of given sample logs)."""
    found: dict[Path, None] = {}
    for given in map(Path, paths):
        if given.is_dir():
            candidates = sorted(given.rglob("*" + RESULTS_SUFFIX))
            logs = sorted(given.rglob(f"*{SAMPLES_INFIX}*.jsonl"))
        elif given.is_file() and given.name.endswith(RESULTS_SUFFIX):
            candidates, logs = [given], []
        elif given.is_file() and SAMPLES_INFIX in given.name and given.suffix == ".jsonl":
            candidates, logs = [results_file_of(given)], [given]
        elif not given.exists():
            raise UsageError(f"{given} does not exist; pass lmms-eval --output_path folders or their *_results.json files")
        else:
            raise UsageError(f"{given} is not an lmms-eval output: pass a folder, a *_results.json or a *_samples_<task>.jsonl file")
        for log in logs:
            if not results_file_of(log).is_file():
                notes.append(f"skipped {log.resolve()}: no results file beside it (expected {results_file_of(log).name})")
        for candidate in candidates:
            if candidate.is_file():
                found.setdefault(candidate.resolve())
    if not found:
        where = ", ".join(map(str, paths))
        raise UsageError(f"no lmms-eval results (*_results.json) under {where}; run lmms-eval with --output_path (and --log_samples for intervals)")
    return list(found)


def read_results(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ReadError(f"not readable as JSON ({exc}); the file looks cut off or corrupted") from exc
    if not isinstance(data, dict) or not isinstance(data.get("results"), dict) or not isinstance(data.get("config"), dict):
        raise ReadError("not an lmms-eval results file (it lacks the 'results' or 'config' section)")
    return data


def read_sample_log(path: Path, expected: int | None, progress) -> SampleLog:
    """All measured samples of a task's log (failed requests are skipped, but counted against
    ``expected``, the samples evaluated); any bad line makes the whole log unusable."""
    samples: list[SampleStats] = []
    spreads: list[dict | None] = []
    failed = 0
    settings: dict[str, Any] | None = None
    recorded: dict[str, Any] = {}
    with path.open("rb") as lines:
        for number, line in enumerate(lines, 1):
            progress.update(len(line) / 1e6)
            if not line.strip():
                continue
            try:
                record = json.loads(line)[DETAIL]
                if "failure" in record:  # a request that failed: no stats
                    failed += 1
                    continue
                samples.append(SampleStats.from_dict(record["stats"]))
                spreads.append(record.get("spread"))
            except ValueError as exc:
                raise ReadError(f"line {number} is not a complete sample ({exc}); the file looks cut off") from exc
            except (KeyError, TypeError) as exc:
                raise ReadError(f"line {number} lacks the textdom record ({exc!r}) that every sample of a measured task has") from exc
            if settings is None:  # the run's: the first sample's settings less what describes that sample only
                per_sample = set(record.get(PER_SAMPLE, ()))
                settings = {k: v for k, v in (record.get("settings") or {}).items() if k not in per_sample}
                recorded = record.get("provenance") or {}
    if expected is not None and len(samples) + failed != expected:
        raise ReadError(f"it holds {len(samples) + failed} samples where the results file counts {expected}; the log is partial")
    return SampleLog(samples, settings or {}, recorded, spreads)


class ResultsFile:
    """One parsed ``*_results.json`` and the names of the sample logs beside it."""

    def __init__(self, path: Path, data: dict[str, Any]):
        self.path = path
        self.data = data
        self.results: dict[str, dict] = data["results"]
        self.groups = {g: list(members) for g, members in (data.get("group_subtasks") or {}).items() if members}
        self.model_args = parse_model_args(data["config"].get("model_args"))
        self.date = str(data.get("date") or path.name[: -len(RESULTS_SUFFIX)])

    def leaves(self, task: str) -> tuple[str, ...]:
        if task not in self.groups:
            return (task,)
        return tuple(leaf for member in self.groups[task] for leaf in self.leaves(member))

    def measured(self, task: str) -> bool:
        return any(f"{name},none" in self.results.get(task, {}) for name in METRIC_NAMES)

    def sample_log(self, task: str) -> Path:
        return sample_log_of(self.path, task)

    def evaluated(self, task: str) -> int | None:
        counts = [(self.data.get("n-samples") or {}).get(leaf, {}).get("effective") for leaf in self.leaves(task)]
        return sum(counts) if all(isinstance(c, int) for c in counts) else None

    def provenance(self, leaves: tuple[str, ...], found: list[SampleLog | None]) -> dict[str, Any]:
        """Versions from the sample log (our record), the rest from the results file."""
        recorded = next((log.provenance for log in found if log is not None and log.provenance), {})
        config = self.data["config"]
        task_config = (self.data.get("configs") or {}).get(leaves[0]) or {}
        return {
            **{key: recorded.get(key) for key in PROVENANCE_KEYS},
            "model_args": config.get("model_args"),
            "gen_kwargs": config.get("gen_kwargs") or None,  # lmms-eval's --gen_kwargs
            "generation_kwargs": task_config.get("generation_kwargs"),  # the task's, after --gen_kwargs
            "date": self.date,
        }

    def run(self, task: str, logs: dict[Path, SampleLog]) -> Run:
        leaves = self.leaves(task)
        found = [logs.get(self.sample_log(leaf)) for leaf in leaves]
        complete = all(found) and self.measured(task)
        raw_settings = found[0].settings if complete else self.model_args
        metric, accuracy = headline_metric(self.results[task])
        return Run(
            task=task,
            leaves=leaves,
            results_file=self.path,
            date=self.date,
            adapter=str(self.data["config"].get("model", "")),
            pretrained=str(raw_settings.get("pretrained") or self.model_args.get("pretrained") or self.data.get("model_name") or ""),
            settings=run_settings(raw_settings),
            measured=self.measured(task),
            accuracy=accuracy,
            accuracy_metric=metric,
            evaluated=self.evaluated(task),
            logged={name: number_or_none(self.results[task].get(f"{name},none")) for name in TEXTDOM_RESULTS},
            samples=[s for log in found for s in log.samples] if complete else None,
            provenance=self.provenance(leaves, found),
            spreads=[s for log in found for s in log.spreads] if complete else None,
        )


def load_runs(paths: Iterable[str | Path], show_progress: bool = False) -> Loaded:
    """Every task and group of every readable results file under ``paths``, with their samples."""
    paths = list(paths)
    notes: list[str] = []
    files: list[ResultsFile] = []
    for path in find_results_files(paths, notes):
        try:
            files.append(ResultsFile(path, read_results(path)))
        except ReadError as exc:
            notes.append(f"skipped {path}: {exc}")
    wanted = {}  # sample log -> samples the results file counts for it
    for file in files:
        for leaf in file.results:
            if leaf in file.groups or not file.measured(leaf):
                continue
            if file.sample_log(leaf).is_file():
                wanted[file.sample_log(leaf)] = file.evaluated(leaf)
            else:
                notes.append(f"{file.path}: no sample log for {leaf} (run lmms-eval with --log_samples); its row uses the results file's mean, without interval")
    total = sum(log.stat().st_size for log in wanted)
    logs: dict[Path, SampleLog] = {}
    with progress_bar("report: reading sample logs", total / 1e6, force=show_progress, large=total >= LARGE_INPUT_BYTES, megabytes=True) as progress:
        for log, expected in wanted.items():
            try:
                logs[log] = read_sample_log(log, expected, progress)
            except ReadError as exc:
                notes.append(f"skipped {log}: {exc}; its row uses the results file's mean, without interval")
    runs = []
    for file in files:
        for task in file.results:
            try:
                runs.append(file.run(task, logs))
            except ValueError as exc:  # e.g. nontext_repeat=abc in model_args
                notes.append(f"skipped {task} of {file.path}: unreadable settings ({exc})")
    return Loaded(runs, notes)
