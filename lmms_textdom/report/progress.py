"""Progress lines on stderr for jobs large enough that silence would look like a hang."""

from __future__ import annotations

import sys
from typing import Callable, TextIO


class Progress:
    """Prints ``label NN% (done of total unit)`` at every tenth of ``total``, when enabled."""

    def __init__(self, label: str, total: float, enabled: bool, describe: Callable[[float], str] = "{:g}".format, stream: TextIO | None = None):
        self.label = label
        self.total = total
        self.enabled = enabled and total > 0
        self.describe = describe
        self.stream = stream or sys.stderr
        self.done = 0.0
        self.shown_tenths = 0

    def advance(self, amount: float = 1) -> None:
        self.done += amount
        if not self.enabled:
            return
        tenths = min(10, int(10 * self.done / self.total))
        if tenths > self.shown_tenths:
            self.shown_tenths = tenths
            self.stream.write(f"report: {self.label} {10 * tenths}% ({self.describe(self.done)} of {self.describe(self.total)})\n")
            self.stream.flush()


def megabytes(n: float) -> str:
    return f"{n / 1e6:.1f} MB"
