"""The table as Markdown (for the terminal) and as CSV (every number at full precision)."""

from __future__ import annotations

import csv
from pathlib import Path

from lmms_textdom.report.table import CELL_KEYS, COLUMNS, EXTRA_KEYS, Row

SETTING_FIELDS = ("nontext_repeat", "prune_method", "prune_ratio", "knockout_layers", "dtype")


def markdown(rows: list[Row], caption: str, notes: list[str], columns=COLUMNS) -> str:
    def line(cells):
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    lines = [caption, "", line(c.header for c in columns), "|" + "|".join("---:" if c.numeric else "---" for c in columns) + "|"]
    lines += [line(row.text(c.key) for c in columns) for row in rows]
    if notes:
        lines += ["", "Notes:", *(f"- {note}" for note in notes)]
    return "\n".join(lines) + "\n"


def csv_record(row: Row, aggregation: str, extra_keys: tuple[str, ...] = ()) -> dict:
    run = row.run
    record = {
        "model": row.model, "pretrained": run.pretrained, "adapter": run.adapter, "modality": row.modality,
        "dataset": row.dataset, "task": run.task, "is_group": run.is_group, "setting": row.setting,
        **{name: run.settings.get(name) for name in SETTING_FIELDS},
    }  # fmt: skip
    for key in (*CELL_KEYS, *extra_keys):
        cell = row.cells.get(key)
        record.update({key: None, f"{key}_low": None, f"{key}_high": None, f"{key}_n": None} if cell is None else {
            key: cell.value, f"{key}_low": cell.low, f"{key}_high": cell.high, f"{key}_n": cell.defined,
        })  # fmt: skip
    record.update(
        accuracy=run.accuracy, accuracy_metric=run.accuracy_metric, samples=run.evaluated, measured=row.measured,
        aggregation=aggregation if row.cells else None, source=row.source, results_file=str(run.results_file), date=run.date,
    )  # fmt: skip
    return record


def write_csv(rows: list[Row], aggregation: str, path: Path, columns=COLUMNS) -> None:
    extra = tuple(c.key for c in columns if c.key in EXTRA_KEYS)
    records = [csv_record(row, aggregation, extra) for row in rows]
    with path.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows([{k: "" if v is None else v for k, v in r.items()} for r in records])
