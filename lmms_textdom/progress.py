"""Progress bars for long jobs (report, sweeps, measuring logged answers): tqdm, as lmms-eval shows them.

A bar is drawn on stderr only when someone can watch it: a job large enough to be worth one, on a
terminal. Logs and pipes stay quiet (tqdm's own rule for ``disable=None``), unless asked for
(``force``, e.g. ``lmms-textdom report --progress``), which draws it wherever stderr goes.
"""

from __future__ import annotations

import sys
from typing import Iterable, TypeVar

from tqdm import tqdm

T = TypeVar("T")

#: "<desc> NN% (done of total)"; the numbers first, so a log read later says where a job stood.
COUNT_FORMAT = "{desc} {percentage:3.0f}% ({n_fmt} of {total_fmt}) |{bar}| {elapsed}<{remaining}"
MEGABYTE_FORMAT = "{desc} {percentage:3.0f}% ({n:.1f} of {total:.1f} MB) |{bar}| {elapsed}<{remaining}"


def progress_bar(desc: str, total: float | None, *, force: bool = False, large: bool = True, megabytes: bool = False, unit: str = "it") -> tqdm:
    """A bar of ``total`` steps (``.update(n)``, ``.close()`` or ``with``; None: not known yet, set ``.total``
    when it is); with ``megabytes`` the steps are MB.

    ``large``: the job is worth a bar (small ones stay silent even on a terminal); ``force``: draw it
    even on a pipe or file.
    """
    disable = False if force else (None if large else True)
    return tqdm(
        total=total, desc=desc, unit="MB" if megabytes else unit, disable=disable, dynamic_ncols=True,
        bar_format=None if total is None else MEGABYTE_FORMAT if megabytes else COUNT_FORMAT,
    )  # fmt: skip


def track(items: Iterable[T], desc: str, *, total: int | None = None, force: bool = False, large: bool = True, unit: str = "it") -> Iterable[T]:
    """``items`` one by one, with a bar of ``total`` (default ``len(items)``) steps under the same rules."""
    items = list(items) if total is None and not hasattr(items, "__len__") else items
    with progress_bar(desc, total if total is not None else len(items), force=force, large=large, unit=unit) as bar:
        for item in items:
            yield item
            bar.update(1)


def write(line: str) -> None:
    """Print a line on stdout without tearing a bar that is being drawn."""
    tqdm.write(line)
    sys.stdout.flush()
