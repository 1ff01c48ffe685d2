"""Pieces shared by the benchmark scripts: the model-shape options and a median timer."""

from __future__ import annotations

import argparse
import statistics
import time


def parser_for(doc: str, shapes: dict) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=shapes, default="mid")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    return parser


def synchronizer(device: str):
    """Waits for queued GPU work before a clock is read (a no-op on CPU)."""
    import torch

    return torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)


def median_time(fn, repeats: int, sync) -> float:
    """Median wall time of ``repeats`` calls after one warm-up call."""
    fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
