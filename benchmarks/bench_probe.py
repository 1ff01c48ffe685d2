"""Wall time and peak memory of generation: plain sdpa vs the attention probe vs eager + output_attentions.

Each (method, prompt length) runs in a fresh process: a warm-up generate, then the median of
``--repeats`` timed ones. Peak extra memory is the RSS high-water mark during the timed generates
minus the RSS just before them (CPU), or torch's peak allocated bytes (CUDA).

    python benchmarks/bench_probe.py                      # CPU table (about 10 minutes on 2 cores)
    python benchmarks/bench_probe.py --device cuda --shape llava-7b --dtype bfloat16 --lengths 700 8192
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time

from common import parser_for

SHAPES = {
    # mid-size random model of the issue: 8 layers, hidden 512, 8 heads
    "mid": dict(num_layers=8, hidden_size=512, num_heads=8, num_kv_heads=8, vocab_size=32064),
    # LLaVA-1.5-7B's language model (Vicuna-7B): 32 layers, hidden 4096, 32 heads
    "llava-7b": dict(num_layers=32, hidden_size=4096, num_heads=32, num_kv_heads=32, vocab_size=32064),
}
METHODS = ("sdpa", "probe", "eager")
TEXT_TOKENS = 124  # the rest of each prompt is "image": 700 tokens -> 576 image tokens as in LLaVA-1.5


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _PeakRSS:
    """Samples RSS every millisecond on a thread; ``peak`` is the high-water mark."""

    def __enter__(self):
        self.peak = _rss_bytes()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_bytes())
            time.sleep(0.001)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes())


def run_one(args) -> dict:
    import torch

    from lmms_textdom.modality import PositionClasses
    from lmms_textdom.probe import AttentionProbe
    from lmms_textdom.tiny import build_llama

    torch.set_grad_enabled(False)
    dtype = getattr(torch, args.dtype)
    impl = "eager" if args.method == "eager" else "sdpa"
    model, _ = build_llama(**SHAPES[args.shape], attn_implementation=impl, initializer_range=0.02)
    model = model.to(device=args.device, dtype=dtype)
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(10, model.config.vocab_size, (1, args.length), generator=gen).to(args.device)
    mask = torch.ones_like(ids)
    classes = PositionClasses(("text", "image"), (torch.arange(args.length) >= TEXT_TOKENS).long()[None])
    kwargs = dict(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False)
    if args.method == "eager":
        kwargs.update(output_attentions=True, return_dict_in_generate=True)

    def generate():
        if args.method == "probe":
            with AttentionProbe(model, classes) as probe:
                model.generate(input_ids=ids, attention_mask=mask, **kwargs)
            probe.stats()
        else:
            out = model.generate(input_ids=ids, attention_mask=mask, **kwargs)
            del out

    def sync():
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    generate()  # warm-up
    sync()
    times = []
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        for _ in range(args.repeats):
            start = time.perf_counter()
            generate()
            sync()
            times.append(time.perf_counter() - start)
        extra = torch.cuda.max_memory_allocated() - before
    else:
        before = _rss_bytes()
        with _PeakRSS() as peak:
            for _ in range(args.repeats):
                start = time.perf_counter()
                generate()
                times.append(time.perf_counter() - start)
        extra = peak.peak - before
    return {"method": args.method, "length": args.length, "seconds": statistics.median(times), "extra_mb": extra / 2**20}


def main() -> None:
    parser = parser_for(__doc__, SHAPES)
    parser.add_argument("--lengths", type=int, nargs="+", default=[700, 1024, 4096, 16384])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--eager-max-length", type=int, default=4096, help="skip eager above this (it needs O(S^2) memory)")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--method", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--length", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args)))
        return

    print(f"shape={args.shape} device={args.device} dtype={args.dtype} new_tokens={args.new_tokens} repeats={args.repeats}")
    print("| prompt S | plain sdpa | probe | eager + output_attentions |")
    print("|---|---|---|---|")
    for length in args.lengths:
        cells = {}
        for method in args.methods:
            if method == "eager" and length > args.eager_max_length:
                cells[method] = None
                continue
            cmd = [sys.executable, __file__, "--one", "--method", method, "--length", str(length)]
            for flag in ("shape", "device", "dtype", "new_tokens", "repeats"):
                cmd += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                cells[method] = {"error": done.stderr.strip().splitlines()[-1][:80]}
            else:
                cells[method] = json.loads(done.stdout.strip().splitlines()[-1])
        base = cells.get("sdpa")

        def fmt(method):
            cell = cells.get(method)
            if cell is None:
                return f"skipped (> {args.eager_max_length} tokens)"
            if "error" in cell:
                return f"failed: {cell['error']}"
            if method == "sdpa" or not base or "error" in base:
                return f"{cell['seconds']:.3f} s, +{cell['extra_mb']:.0f} MB"
            return f"{cell['seconds'] / base['seconds']:.2f}x, +{cell['extra_mb']:.0f} MB"

        print(f"| {length} | " + " | ".join(fmt(m) for m in METHODS if m in args.methods) + " |", flush=True)


if __name__ == "__main__":
    main()
