"""A sweep's runs against its baseline, sample by sample: the paired table and the accuracy-vs-MDI figure.

A sweep folder holds ``textdom_sweep.json`` (written by ``lmms-textdom sweep``, ``table2`` and
``knockout``): the baseline's folder and each point's. Per point and task, on the samples both it
and the baseline answered (by doc id):

- accuracy (the task's headline metric, per sample: its number, a ``score`` field, or the mean of a
  list), its paired difference to the baseline with a paired bootstrap interval, and the exact
  McNemar p-value where every per-sample value is 0 or 1;
- MDI and AEI per layer group (mean of the defined per-sample values) and their paired differences
  (samples defined in both runs);
- the yes-ratio (share of answers starting with "yes") for tasks whose targets are all yes / no;
- how many answers differ from the baseline's.

A ``blind`` point (the non-text input removed) has accuracy but no MDI; the figure gives it a
column of its own.
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lmms_textdom.core.metrics import GROUPS, METRICS
from lmms_textdom.integration.runner import latest_results
from lmms_textdom.report.paired import PairedDifference, mcnemar_exact, paired_bootstrap
from lmms_textdom.report.runs import SAMPLES_INFIX, headline_metric

MANIFEST = "textdom_sweep.json"
CELLS = tuple(f"{m}_{g}" for m in METRICS for g in GROUPS)


def write_manifest(output: Path, model: str, pretrained: str, tasks: str, baseline: str, points: list[tuple[str, str]], blind: str | None = None) -> Path:
    """``points``: (name, folder) of every point but the baseline; ``blind``: the blind run's folder, if any."""
    path = Path(output) / MANIFEST
    path.write_text(json.dumps({
        "model": model, "pretrained": pretrained, "tasks": tasks, "baseline": baseline,
        "points": [{"name": n, "folder": f} for n, f in points], "blind": blind,
    }, indent=1))  # fmt: skip
    return path


def find_manifests(paths) -> list[Path]:
    found: dict[Path, None] = {}
    for given in map(Path, paths):
        if given.is_dir():
            for manifest in sorted(given.rglob(MANIFEST)):
                found.setdefault(manifest.resolve())
    return list(found)


# ----- reading one point --------------------------------------------------------------------------------


@dataclass
class Sample:
    score: float | None
    answer: str
    target: Any
    values: dict[str, float | None]  # mdi_early, ..., aei_late (None: undefined)


@dataclass
class PointLog:
    name: str
    folder: Path
    metric: str | None
    samples: dict[Any, Sample]


def per_sample_score(value: Any) -> float | None:
    """A task metric's per-sample entry as a number: itself, its ``score`` field, or the mean of a list."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, dict):
        return per_sample_score(value.get("score"))
    if isinstance(value, (list, tuple)):
        numbers = [per_sample_score(v) for v in value]
        numbers = [v for v in numbers if v is not None]
        return math.fsum(numbers) / len(numbers) if numbers else None
    return None


def _answer(row: dict) -> str:
    found = row.get("filtered_resps") or row.get("resps") or [""]
    while isinstance(found, (list, tuple)) and found:
        found = found[0]
    return str(found) if found is not None else ""


def read_point(name: str, folder: Path, task: str) -> PointLog:
    results = latest_results(folder)
    if results is None:
        raise FileNotFoundError(f"no lmms-eval results under {folder}")
    metric, _ = headline_metric(json.loads(results.read_text())["results"].get(task, {}))
    logs = sorted(results.parent.glob(f"*{SAMPLES_INFIX}{task}.jsonl"), key=lambda p: p.stat().st_mtime)
    logs = [log for log in logs if log.name.startswith(results.name.split("_results")[0])] or logs
    if not logs:
        raise FileNotFoundError(f"no sample log of {task} under {folder} (lmms-eval --log_samples)")
    samples = {}
    for line in logs[-1].read_text().splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        values = (row.get("textdom") or {}).get("values") or {}
        samples[row["doc_id"]] = Sample(per_sample_score(row.get(metric)), _answer(row), row.get("target"), {c: values.get(c) for c in CELLS})
    return PointLog(name, folder, metric, samples)


# ----- the paired summary -----------------------------------------------------------------------------


@dataclass
class Summary:
    name: str
    samples: int
    accuracy: float | None
    delta: PairedDifference | None = None
    mcnemar: float | None = None
    values: dict[str, float | None] = field(default_factory=dict)  # cell -> mean of defined
    deltas: dict[str, PairedDifference | None] = field(default_factory=dict)
    yes_ratio: float | None = None
    changed: int | None = None
    blind: bool = False

    @property
    def measured(self) -> bool:
        return any(v is not None for v in self.values.values())


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return math.fsum(values) / len(values) if values else None


YES, NO = "yes", "no"


def first_word(text: str) -> str:
    match = re.match(r"\W*(\w+)", str(text).lower())
    return match.group(1) if match else ""


def is_yes_no(targets) -> bool:
    words = [str(t).strip().strip(".").lower() for t in targets if t is not None]
    return bool(words) and all(w in (YES, NO) for w in words)


def yes_ratio(answers) -> float | None:
    """Share of answers whose first word is "yes" (None without answers)."""
    answers = list(answers)
    return sum(first_word(a) == YES for a in answers) / len(answers) if answers else None


def summarize(point: PointLog, baseline: PointLog, resamples: int, seed: int, blind: bool = False) -> Summary:
    docs = sorted(set(point.samples) & set(baseline.samples), key=str)
    mine = [point.samples[d] for d in docs]
    theirs = [baseline.samples[d] for d in docs]
    summary = Summary(point.name, len(point.samples), _mean(s.score for s in point.samples.values()), blind=blind)
    summary.values = {c: _mean(s.values[c] for s in point.samples.values()) for c in CELLS}
    if is_yes_no(s.target for s in point.samples.values()):
        summary.yes_ratio = yes_ratio(s.answer for s in point.samples.values())
    if point.folder == baseline.folder:
        return summary
    scored = [(a.score, b.score) for a, b in zip(theirs, mine) if a.score is not None and b.score is not None]
    key = f"{baseline.folder.name}|{point.folder.name}"
    summary.delta = paired_bootstrap([a for a, _ in scored], [b for _, b in scored], resamples, seed, key)
    if scored and all(v in (0.0, 1.0) for pair in scored for v in pair):
        summary.mcnemar = mcnemar_exact([a for a, _ in scored], [b for _, b in scored])
    for cell in CELLS:
        pairs = [(a.values[cell], b.values[cell]) for a, b in zip(theirs, mine) if a.values[cell] is not None and b.values[cell] is not None]
        summary.deltas[cell] = paired_bootstrap([a for a, _ in pairs], [b for _, b in pairs], resamples, seed, f"{key}|{cell}")
    summary.changed = sum(a.answer != b.answer for a, b in zip(theirs, mine))
    return summary


@dataclass
class SweepTable:
    title: str
    task: str
    metric: str | None
    rows: list[Summary]
    yes_no: bool


def leaf_tasks(tasks: list[str], folder: Path) -> list[str]:
    """The tasks that have sample logs: a group asked for (``mmmu_pro_textdom``) stands for its subtasks,
    as the run's results file lists them (lmms-eval logs samples per subtask only)."""
    results = latest_results(folder)
    groups = (json.loads(results.read_text()).get("group_subtasks") or {}) if results is not None else {}

    def leaves(task: str) -> list[str]:
        members = groups.get(task)
        return [leaf for member in members for leaf in leaves(member)] if members else [task]

    return [leaf for task in tasks for leaf in leaves(task.strip())]


def tabulate(manifest: Path, resamples: int = 1000, seed: int = 0) -> list[SweepTable]:
    """One paired table per task of the sweep described by ``manifest``."""
    spec = json.loads(Path(manifest).read_text())
    root = Path(manifest).parent
    tables = []
    for task in leaf_tasks(spec["tasks"].split(","), root / spec["baseline"]):
        baseline = read_point("baseline", root / spec["baseline"], task)
        rows = [summarize(baseline, baseline, resamples, seed)]
        entries = [(p["name"], p["folder"], False) for p in spec["points"]]
        if spec.get("blind"):
            entries.append(("blind", spec["blind"], True))
        for name, folder, blind in entries:
            rows.append(summarize(read_point(name, root / folder, task), baseline, resamples, seed, blind))
        title = f"{spec['model']} {Path(spec['pretrained']).name}, {task}: each setting against the baseline on the same samples"
        tables.append(SweepTable(title, task, baseline.metric, rows, any(r.yes_ratio is not None for r in rows)))
    return tables


# ----- output ---------------------------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 2, sign: bool = False) -> str:
    if value is None:
        return "none"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def _p(value: float | None) -> str:
    return "" if value is None else (f"{value:.3f}" if value >= 1e-3 else f"{value:.1e}")


def _interval(d: PairedDifference | None) -> str:
    if d is None:
        return "none"
    if d.low is None:
        return _fmt(d.mean, sign=True)
    return f"{d.mean:+.2f} [{d.low:+.2f}, {d.high:+.2f}]"


def _groups(values: dict, metric: str, sign: bool = False) -> str:
    return " / ".join(_fmt(values.get(f"{metric}_{g}"), sign=sign) for g in GROUPS)


def _delta_groups(deltas: dict, metric: str) -> str:
    return " / ".join(_fmt(d.mean if (d := deltas.get(f"{metric}_{g}")) else None, sign=True) for g in GROUPS)


def render(table: SweepTable) -> str:
    name = table.metric or "accuracy"
    header = [
        "setting", "samples", name, f"change in {name} [95% CI]", "McNemar p", "MDI early / middle / late",
        "change in MDI", "AEI early / middle / late", "change in AEI", "answers changed",
    ]  # fmt: skip
    if table.yes_no:
        header.insert(-1, "yes-ratio")
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for i, row in enumerate(table.rows):
        base = i == 0
        cells = [
            "baseline (plain greedy)" if base else row.name, str(row.samples), _fmt(row.accuracy),
            "" if base else _interval(row.delta), "" if base else _p(row.mcnemar), _groups(row.values, "mdi"),
            "" if base else _delta_groups(row.deltas, "mdi"), _groups(row.values, "aei"), "" if base else _delta_groups(row.deltas, "aei"),
            "" if base else str(row.changed),
        ]  # fmt: skip
        if table.yes_no:
            cells.insert(-1, _fmt(row.yes_ratio))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_csv(tables: list[SweepTable], path: Path) -> None:
    with path.open("w", newline="") as handle:
        out = csv.writer(handle)
        out.writerow([
            "task", "setting", "blind", "samples", "metric", "accuracy", "accuracy_change", "accuracy_change_low", "accuracy_change_high",
            "pairs", "mcnemar_p", "yes_ratio", "answers_changed",
            *[f"{c}{suffix}" for c in CELLS for suffix in ("", "_change", "_change_low", "_change_high")],
        ])  # fmt: skip
        for table in tables:
            for row in table.rows:
                d = row.delta
                cells = []
                for c in CELLS:
                    change = row.deltas.get(c)
                    cells += [row.values.get(c), *((change.mean, change.low, change.high) if change else (None, None, None))]
                out.writerow([
                    table.task, row.name, row.blind, row.samples, table.metric, row.accuracy, *((d.mean, d.low, d.high, d.pairs) if d else (None,) * 4),
                    row.mcnemar, row.yes_ratio, row.changed, *cells,
                ])  # fmt: skip


def figure(table: SweepTable, out_dir: Path, name: str) -> list[Path]:
    """Change in accuracy against change in MDI, one point per setting with both intervals, per layer
    group; a "blind" column beside them where a blind run exists (its accuracy change, no MDI)."""
    from matplotlib.figure import Figure

    from lmms_textdom.report.figures import MARKERS, save

    points = [r for r in table.rows[1:] if not r.blind and r.delta is not None]
    blind = [r for r in table.rows[1:] if r.blind and r.delta is not None]
    widths = [3] * len(GROUPS) + ([1] if blind else [])
    fig = Figure(figsize=(3.4 * len(GROUPS) + (1.4 if blind else 0), 3.8))
    axes = fig.subplots(1, len(widths), sharey=True, width_ratios=widths)
    colours = [f"C{i % 10}" for i in range(len(points))]
    for ax, group in zip(axes, GROUPS):
        for i, (row, colour) in enumerate(zip(points, colours)):
            dx = row.deltas.get(f"mdi_{group}")
            x = np.nan if dx is None else dx.mean
            xerr = None if dx is None or dx.low is None else [[dx.mean - dx.low], [dx.high - dx.mean]]
            yerr = None if row.delta.low is None else [[row.delta.mean - row.delta.low], [row.delta.high - row.delta.mean]]
            ax.errorbar([x], [row.delta.mean], xerr=xerr, yerr=yerr, marker=MARKERS[i % len(MARKERS)], color=colour, capsize=3, label=row.name)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_xlabel(f"change in MDI, {group} layers")
        ax.set_title(f"{group} layers", fontsize=9)
    axes[0].set_ylabel(f"change in {table.metric or 'accuracy'} (vs baseline)")
    if blind:
        ax = axes[-1]
        for i, row in enumerate(blind):
            yerr = None if row.delta.low is None else [[row.delta.mean - row.delta.low], [row.delta.high - row.delta.mean]]
            ax.errorbar([i], [row.delta.mean], yerr=yerr, marker="s", color="black", capsize=3)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_xticks(range(len(blind)), [r.name for r in blind])
        ax.set_xlim(-0.8, len(blind) - 0.2)
        ax.set_title("blind (no MDI)", fontsize=9)
    low, high = axes[0].get_ylim()
    axes[0].set_ylim(min(low, -0.05), max(high, 0.05))  # accuracy changes live in [-1, 1]: no zoom onto rounding noise
    if points:
        fig.legend(*axes[0].get_legend_handles_labels(), fontsize=7, loc="upper center", ncols=min(4, len(points)), bbox_to_anchor=(0.5, 0.02))
    fig.suptitle(table.title + " (95% paired bootstrap intervals)", fontsize=8)
    out_dir.mkdir(parents=True, exist_ok=True)
    return save(fig, out_dir, name)


def write_all(manifest: Path, out_dir: Path, resamples: int, seed: int, figures: bool = True) -> tuple[str, list[Path]]:
    """Markdown, CSV and (with ``figures``) one figure per task of a sweep; returns the Markdown and the files."""
    tables = tabulate(manifest, resamples, seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    text = "\n\n".join(f"{t.title}\n\n{render(t)}" for t in tables)
    written = [out_dir / "sweep.md", out_dir / "sweep.csv"]
    written[0].write_text(text + "\n")
    write_csv(tables, written[1])
    if figures:
        for table in tables:
            written += figure(table, out_dir, "sweep" if len(tables) == 1 else f"sweep_{table.task}")
    return text, written
