"""The comparison table in the layout of the paper's Table 1, one row per run.

Cell values come from the metric core (``aggregate_samples`` on the run's per-sample stats); a run
whose sample log is missing or unreadable shows its results file's values, which are the mean of
per-sample values, and only under that aggregation.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from lmms_textdom.mitigations.settings import switch_label
from lmms_textdom.core.metrics import GROUPS, METRICS, aggregate_samples, layer_groups, sample_dominance
from lmms_textdom.report import answer_views, bootstrap
from lmms_textdom.report.duplicates import identity
from lmms_textdom.report.labels import distinct_tags
from lmms_textdom.progress import track
from lmms_textdom.report.runs import Run
from lmms_textdom.core.stats import TEXT, MODALITIES

#: MDI / AEI cells in the paper's order: early MDI, early AEI, middle MDI, ...
CELL_KEYS = tuple(f"{m}_{g}" for g in GROUPS for m in METRICS)
#: Cells of the optional column sets (``--columns``), beyond the paper's layout.
EXTRA_KEYS = tuple(k for keys in answer_views.EXTRA_COLUMNS.values() for k in keys)
#: Sample x resample draws above which the bootstrap shows a progress bar (on a terminal) without being asked.
LARGE_BOOTSTRAP = 20_000_000

AGGREGATION_TEXT = {
    "mean": "mean of per-sample values",
    "pooled": "pooled: all output rows of all samples as one unit (per-token normalisers sum of rows x |T| and of rows x |O|)",
    "geomean": "geometric mean of per-sample values",
    "median": "median of per-sample values",
}


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    numeric: bool


COLUMNS = (
    Column("model", "model", False),
    Column("modality", "modality", False),
    Column("dataset", "dataset", False),
    Column("setting", "setting", False),
    *(Column(key, f"{key.split('_')[1]} {key.split('_')[0].upper()}", True) for key in CELL_KEYS),
    Column("accuracy", "accuracy", True),
    Column("samples", "n", True),
)
#: Shown last, only when some rows need it: what tells apart rows of the same "model dataset setting".
RUN_COLUMN = Column("tag", "run", False)


@dataclass(frozen=True)
class Cell:
    value: float | None
    low: float | None = None
    high: float | None = None
    defined: int | None = None  # samples with a defined value (None: only the results file's mean is known)


def format_number(value: float) -> str:
    return f"{value:.2f}" if 0.01 <= abs(value) < 1e5 else f"{value:.2e}"


def short_model_name(pretrained: str) -> str:
    """Hub ids stay (``llava-hf/llava-1.5-7b-hf``); local checkpoint folders show their own name."""
    local = os.path.isabs(pretrained) or pretrained.startswith((".", "~")) or pretrained.count("/") != 1
    return os.path.basename(pretrained.rstrip("/")) if local else pretrained


def setting_label(settings: dict) -> str:
    parts = []
    if settings["nontext_repeat"] != 1:
        parts.append(f"x{settings['nontext_repeat']}")
    if settings["prune_ratio"]:
        parts.append(f"{settings['prune_method'] or 'pruned'} {settings['prune_ratio']:.0%}")
    if settings.get("knockout_layers"):
        parts.append(f"knock-out {settings['knockout_layers']}")
    parts += switch_label(settings)
    if settings.get("answer_tokens"):  # lmms-textdom measure: answers from a log, not generated here
        parts.append(f"measured ({settings['answer_tokens']})")
    return ", ".join(parts) or "default"


@dataclass
class Row:
    run: Run
    cells: dict[str, Cell]  # empty for runs without MDI/AEI
    measured: int | None  # samples with MDI defined in all three layer groups
    source: str  # where the cells come from: "sample log", "results file" or ""
    tag: str = ""  # tells the row apart from others of the same "model dataset setting" (date or folder)

    @property
    def model(self) -> str:
        return short_model_name(self.run.pretrained)

    @property
    def modality(self) -> str:
        if not self.run.samples:
            return ""
        present = {c for s in self.run.samples for c in s.classes if c != TEXT}
        return "+".join(c for c in MODALITIES if c in present)

    @property
    def dataset(self) -> str:
        return self.run.task.replace("_textdom", "")

    @property
    def setting(self) -> str:
        return setting_label(self.run.settings)

    @property
    def label(self) -> str:
        """ "model dataset setting", with the row's tag where another row reads the same."""
        plain = f"{self.model} {self.dataset} {self.setting}"
        return f"{plain} ({self.tag})" if self.tag else plain

    def number(self, key: str) -> float | str | None:
        """The sortable value of a column."""
        if key in CELL_KEYS or key in EXTRA_KEYS:
            return self.cells[key].value if key in self.cells else None
        if key == "accuracy":
            return self.run.accuracy
        if key == "samples":
            return self.run.evaluated
        return getattr(self, key)

    def text(self, key: str) -> str:
        """The displayed value of a column ("-" where there is none)."""
        if key in CELL_KEYS or key in EXTRA_KEYS:
            cell = self.cells.get(key, Cell(None))
            if cell.value is None:
                return "-"
            interval = f" [{format_number(cell.low)}, {format_number(cell.high)}]" if cell.low is not None else ""
            return format_number(cell.value) + interval
        if key == "accuracy":
            return "-" if self.run.accuracy is None else f"{self.run.accuracy:.3f}"
        if key == "samples":
            if self.run.evaluated is None:
                return "-"
            unmeasured = self.measured is not None and self.measured < self.run.evaluated
            return f"{self.run.evaluated} ({self.measured} measured)" if unmeasured else str(self.run.evaluated)
        return getattr(self, key)


def caption(aggregation: str, resamples: int, seed: int) -> str:
    text = (
        "MDI / AEI of the early (first two), middle (two central) and late (last two) layers: "
        f"{AGGREGATION_TEXT[aggregation]}, samples with an undefined value skipped."
    )
    if resamples:
        text += f" [low, high]: {bootstrap.CONFIDENCE:.0%} percentile bootstrap interval over samples ({resamples} resamples, seed {seed})."
    return text + " accuracy: the task's own metric from lmms-eval's results file. n: samples evaluated."


def all_groups_defined(samples) -> int:
    groups = layer_groups(samples[0].num_layers).values()
    return sum(all(sample_dominance(s, idx).defined for idx in groups) for s in samples)


def sample_row(run: Run, aggregation: str, resamples: int, seed: int) -> Row:
    point = aggregate_samples(run.samples, aggregation)
    interval = bootstrap.intervals(run.samples, aggregation, resamples, seed, repr(identity(run)))
    cells = {key: Cell(point[key].value, *interval.get(key, (None, None)), point[key].n) for key in CELL_KEYS}
    return Row(run, cells, all_groups_defined(run.samples), "sample log")


def results_row(run: Run, aggregation: str, notes: list[str]) -> Row:
    """A measured run without usable samples: the results file's mean, or nothing for other aggregations."""
    measured = run.logged["textdom"]
    if aggregation != "mean":
        notes.append(f"{run.task} of {run.results_file}: {aggregation} needs the sample log, so its MDI/AEI cells are empty")
        return Row(run, {}, None if measured is None else int(measured), "")
    return Row(run, {key: Cell(run.logged[key]) for key in CELL_KEYS}, None if measured is None else int(measured), "results file")


def row_order(row: Row) -> tuple:
    s = row.run.settings
    return (row.model, row.dataset, not row.run.is_group, s["prune_method"] or "", s["prune_ratio"], s["nontext_repeat"], row.setting)


def build_rows(runs: list[Run], aggregation: str, resamples: int, seed: int, show_progress: bool = False) -> tuple[list[Row], list[str]]:
    """One row per run, in the order model, dataset (group before its tasks), setting."""
    notes: list[str] = []
    draws = sum(len(run.samples or ()) for run in runs) * resamples
    rows = []
    for run in track(runs, "report: bootstrapping runs", force=show_progress, large=draws >= LARGE_BOOTSTRAP):
        if run.samples:
            rows.append(sample_row(run, aggregation, resamples, seed))
        elif run.measured:
            rows.append(results_row(run, aggregation, notes))
        else:
            rows.append(Row(run, {}, None, ""))
    rows.sort(key=row_order)
    tags = distinct_tags([(row.label, row.run.date, row.run.results_file) for row in rows])
    for row, tag in zip(rows, tags):
        row.tag = tag
    return rows, notes


def columns_with(extra: list[str], rows: list[Row] = ()) -> tuple[Column, ...]:
    """The paper's columns with the chosen optional sets inserted before accuracy, and the run column
    when some of ``rows`` would read alike without it."""
    added = tuple(Column(k, answer_views.HEADERS[k], True) for name in extra for k in answer_views.EXTRA_COLUMNS[name])
    cut = [c.key for c in COLUMNS].index("accuracy")
    tagged = (RUN_COLUMN,) if any(row.tag for row in rows) else ()
    return COLUMNS[:cut] + added + COLUMNS[cut:] + tagged


def add_extra_cells(rows: list[Row], extra: list[str], resamples: int, seed: int) -> None:
    """Fill the optional columns' cells of the rows with sample logs."""
    if not extra:
        return
    for row in rows:
        if row.run.samples:
            found = answer_views.extra_cells(row.run.samples, extra, resamples, seed, repr(identity(row.run)), row.run.spreads)
            row.cells.update({k: Cell(*v) for k, v in found.items()})


def extra_caption(extra: list[str]) -> str:
    return "".join(f" {answer_views.CAPTIONS[name]}; mean of per-sample values." for name in extra)
