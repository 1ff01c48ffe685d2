"""The table as Markdown (for the terminal) and as CSV (every number at full precision)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from lmms_textdom.provenance import LIBRARIES
from lmms_textdom.report.labels import readable_date
from lmms_textdom.report.table import CELL_KEYS, COLUMNS, EXTRA_KEYS, Row

SETTING_FIELDS = ("nontext_repeat", "prune_method", "prune_ratio", "knockout_layers", "dtype")


def provenance_text(row: Row) -> str:
    """One run's provenance in a line: code versions, model_args, generation kwargs, date."""
    found = row.run.provenance
    if found.get("lmms_textdom"):
        commit = f" (commit {found['lmms_textdom_commit']})" if found.get("lmms_textdom_commit") else ""
        code = f"lmms-textdom {found['lmms_textdom']}{commit}, " + ", ".join(f"{name} {found.get(key) or '?'}" for key, name in LIBRARIES.items())
    else:
        code = "code versions not recorded (no textdom sample log, or one written before they were)"
    parts = [code, f"model_args `{found.get('model_args') or ''}`"]
    if found.get("generation_kwargs") is not None:
        parts.append(f"generation kwargs `{json.dumps(found['generation_kwargs'], sort_keys=True, default=str)}`")
    if found.get("gen_kwargs"):
        given = found["gen_kwargs"] if isinstance(found["gen_kwargs"], str) else json.dumps(found["gen_kwargs"], sort_keys=True, default=str)
        parts.append(f"--gen_kwargs `{given}`")
    parts.append(f"date {readable_date(str(found.get('date') or row.run.date))}")
    return "; ".join(parts)


def markdown(rows: list[Row], caption: str, notes: list[str], columns=COLUMNS, provenance: bool = False) -> str:
    def line(cells):
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    lines = [caption, "", line(c.header for c in columns), "|" + "|".join("---:" if c.numeric else "---" for c in columns) + "|"]
    lines += [line(row.text(c.key) for c in columns) for row in rows]
    if provenance:
        lines += ["", "Provenance:", *(f"- **{row.label}**: {provenance_text(row)}" for row in rows)]
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
        run=row.tag,
    )  # fmt: skip
    found = run.provenance
    record.update({f"{key}_version": found.get(key) for key in ("lmms_textdom", *LIBRARIES)})
    record.update(
        lmms_textdom_commit=found.get("lmms_textdom_commit"), model_args=found.get("model_args"),
        generation_kwargs=None if found.get("generation_kwargs") is None else json.dumps(found["generation_kwargs"], sort_keys=True, default=str),
        gen_kwargs=found.get("gen_kwargs") if isinstance(found.get("gen_kwargs"), (str, type(None))) else json.dumps(found["gen_kwargs"], sort_keys=True),
    )  # fmt: skip
    return record


def write_csv(rows: list[Row], aggregation: str, path: Path, columns=COLUMNS) -> None:
    extra = tuple(c.key for c in columns if c.key in EXTRA_KEYS)
    records = [csv_record(row, aggregation, extra) for row in rows]
    with path.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows([{k: "" if v is None else v for k, v in r.items()} for r in records])
