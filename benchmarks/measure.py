"""Shared by the benchmark scripts: resident memory, its high-water mark, and median timings."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRSS:
    """Samples RSS every millisecond on a thread; ``peak`` is the high-water mark."""

    def __enter__(self):
        self.peak = rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            time.sleep(0.001)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())


#: wall time, or this process's CPU time (all its threads): with one thread, other processes' load
#: on a shared machine stretches the wall time but not the CPU time
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


#: how repeated timings are summarised: the median, or the minimum (on a shared machine other
#: processes only ever add time, even to a one-thread CPU-time clock: cache and core sharing)
STATS = {"median": statistics.median, "min": min}


def timed(fn, repeats: int, sync=lambda: None, clock: str = "wall", warm_up: bool = True, stat: str = "median") -> float:
    """Median (or ``stat``) time of ``repeats`` calls (after one warm-up call unless told otherwise)."""
    now = CLOCKS[clock]
    if warm_up:
        fn()
        sync()
    times = []
    for _ in range(repeats):
        start = now()
        fn()
        sync()
        times.append(now() - start)
    return STATS[stat](times)


def base_parser(doc: str, shapes: dict) -> argparse.ArgumentParser:
    """The options every benchmark takes."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=shapes, default="mid")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--clock", choices=CLOCKS, default="wall", help="cpu: this process's CPU time (use with --threads 1)")
    parser.add_argument("--stat", choices=STATS, default="median", help="summary of the repeats (min: least disturbed run)")
    parser.add_argument(
        "--threads", type=int, default=0,
        help="torch CPU threads (0 = torch's default). On a shared machine use 1: when another process holds "
        "a core, every multi-threaded op waits for its second thread, and small ops cost milliseconds",
    )  # fmt: skip
    return parser


def comparison_parser(doc: str, shapes: dict, methods: tuple[str, ...]) -> argparse.ArgumentParser:
    """``base_parser`` plus the method choice, and the hidden flags of one fresh-process run."""
    parser = base_parser(doc, shapes)
    parser.add_argument("--methods", nargs="+", choices=methods, default=list(methods))
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--method", choices=methods, help=argparse.SUPPRESS)
    return parser


def use_threads(args) -> None:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)


def time_and_peak(fn, repeats: int, device: str, clock: str = "wall", stat: str = "median") -> dict:
    """Median (or ``stat``) time of ``repeats`` calls after a warm-up, and the extra memory they needed at peak.

    Extra memory: RSS high-water mark minus RSS before the timed calls (CPU), or torch's peak
    allocated bytes minus those allocated before (CUDA).
    """
    import torch

    cuda = device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    fn()  # warm-up, outside the memory window
    sync()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated() if cuda else rss_bytes()
    with PeakRSS() as peak:
        seconds = timed(fn, repeats, sync, clock, warm_up=False, stat=stat)
    extra = torch.cuda.max_memory_allocated() - before if cuda else peak.peak - before
    return {"seconds": seconds, "extra_mb": extra / 2**20}


def run_fresh(script: str, args, *flags: str) -> dict:
    """``script --one *flags`` plus the common options, in a new process; its last stdout line as JSON."""
    cmd = [sys.executable, script, "--one", *flags]
    for name in ("shape", "device", "dtype", "new_tokens", "repeats", "threads", "clock", "stat"):
        cmd += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1][:80]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def table_cell(cell: dict | None, base: dict | None, skipped: str) -> str:
    """Seconds and extra memory for the reference method, time ratio and extra memory for the others."""
    if cell is None:
        return skipped
    if "error" in cell:
        return f"failed: {cell['error']}"
    if cell is base or not base or "error" in base:
        return f"{cell['seconds']:.3f} s, +{cell['extra_mb']:.0f} MB"
    return f"{cell['seconds'] / base['seconds']:.2f}x, +{cell['extra_mb']:.0f} MB"


def settings_line(args) -> str:
    return (
        f"shape={args.shape} device={args.device} dtype={args.dtype} new_tokens={args.new_tokens} "
        f"repeats={args.repeats} threads={args.threads or 'default'} clock={args.clock} stat={args.stat}"
    )


def compare_methods(script: str, args, methods: tuple[str, ...], flags: tuple[str, ...], eager_skipped: str = "") -> tuple[dict, str]:
    """Each asked-for method run fresh with ``flags``; eager not run when ``eager_skipped`` says why.

    Returns the raw cells and the table cells joined with ``|`` (plain sdpa is the reference, else the first method).
    """
    asked = [m for m in methods if m in args.methods]
    cells = {m: run_fresh(script, args, "--method", m, *flags) for m in asked if not (m == "eager" and eager_skipped)}
    base = cells.get("sdpa", cells.get(asked[0]))
    return cells, " | ".join(table_cell(cells.get(m), base, eager_skipped) for m in asked)
