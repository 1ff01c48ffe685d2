"""Telling apart runs whose "model dataset setting" reads the same, in tables and figure legends.

Two runs can share that text and still differ: a checkpoint folder of the same name elsewhere,
another adapter, settings the label leaves out (dtype, frame sampling, ...), a measured run beside an
accuracy-only one. Each such run gets a tag: its date when the dates differ, else the first folder
(from the results file upwards) where their paths differ, else the results file's name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence


def readable_date(date: str) -> str:
    """lmms-eval's ``20261206_121355`` as ``2026-12-06 12:13:55``; other texts unchanged."""
    digits = date.replace("_", "")
    if len(date) == 15 and date[8] == "_" and digits.isdigit():
        return f"{date[:4]}-{date[4:6]}-{date[6:8]} {date[9:11]}:{date[11:13]}:{date[13:15]}"
    return date


def differing_folder(files: Sequence[Path]) -> list[str] | None:
    """Per file, the nearest folder name above it where the files' paths part ways (None: same folder)."""
    parents = [list(reversed(Path(f).resolve().parent.parts)) for f in files]
    for depth in range(max(map(len, parents))):
        names = [p[depth] if depth < len(p) else "" for p in parents]
        if len(set(names)) == len(names):
            return names
    return None


def distinct_tags(items: Sequence[tuple[str, str, Path]]) -> list[str]:
    """For (label, date, results file) items, a tag per item: "" where the label is already unique."""
    tags = [""] * len(items)
    groups: dict[str, list[int]] = {}
    for i, (label, _, _) in enumerate(items):
        groups.setdefault(label, []).append(i)
    for members in groups.values():
        if len(members) < 2:
            continue
        dates = [items[i][1] for i in members]
        files = [Path(items[i][2]) for i in members]
        if len(set(dates)) == len(dates):
            found = [readable_date(d) for d in dates]
        else:
            found = differing_folder(files)
            if found is None:
                found = [f.name for f in files] if len({f.name for f in files}) == len(files) else [f"run {n + 1}" for n in range(len(files))]
        for i, tag in zip(members, found):
            tags[i] = tag
    return tags
