"""Progress bars: drawn on a terminal for large jobs, quiet on pipes and files unless forced."""

from __future__ import annotations

import contextlib
import io

import pytest

from lmms_textdom.progress import progress_bar, track


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def drawn(stream: io.StringIO, **rules) -> str:
    with contextlib.redirect_stderr(stream):
        assert list(track(range(5), "sweep: runs", **rules)) == list(range(5))
    return stream.getvalue()


@pytest.mark.parametrize(
    "stream,rules,shown",
    [
        (Terminal(), {}, True),  # a large job on a terminal
        (io.StringIO(), {}, False),  # the same job into a pipe or log file: quiet, as lmms-eval's bars
        (Terminal(), {"large": False}, False),  # a small job stays quiet even on a terminal
        (io.StringIO(), {"force": True}, True),  # --progress: drawn wherever stderr goes
    ],
)
def test_bars_follow_the_terminal_and_the_job_size(stream, rules, shown):
    out = drawn(stream, **rules)
    assert ("sweep: runs 100% (5 of 5)" in out) is shown, out


def test_megabyte_bar_reports_megabytes():
    stream = io.StringIO()
    with contextlib.redirect_stderr(stream), progress_bar("report: reading sample logs", 2.5, force=True, megabytes=True) as bar:
        bar.update(1.25)
        bar.update(1.25)
    assert "report: reading sample logs 100% (2.5 of 2.5 MB)" in stream.getvalue()
