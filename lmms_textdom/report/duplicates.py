"""Runs of the same thing twice: the latest one wins, and the report says which file it dropped."""

from __future__ import annotations

from lmms_textdom.report.runs import Run, settings_key


def identity(run: Run) -> tuple:
    """What makes two runs the same measurement: adapter, checkpoint, settings and task.

    Measured and accuracy-only runs are never the same: one cannot stand in for the other.
    """
    return (run.adapter, run.pretrained, run.measured, settings_key(run.settings), run.task)


def keep_latest(runs: list[Run]) -> tuple[list[Run], list[str]]:
    """The latest run (by lmms-eval's ``date``, then file time) of each identity, and a note per dropped run."""
    latest: dict[tuple, Run] = {}
    notes = []
    for run in sorted(runs, key=lambda r: (r.date, r.results_file.stat().st_mtime, str(r.results_file))):
        key = identity(run)
        if key in latest:
            old = latest[key]
            notes.append(
                f"duplicate run of {run.task} ({run.adapter} {run.pretrained}): kept {run.results_file} "
                f"(date {run.date}), dropped {old.results_file} (date {old.date})"
            )
        latest[key] = run
    kept = set(map(id, latest.values()))
    return [run for run in runs if id(run) in kept], notes
