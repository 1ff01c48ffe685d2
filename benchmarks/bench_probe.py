"""Wall time and peak memory of generation: plain attention vs the attention probe vs eager + output_attentions.

Each (method, prompt length) runs in a fresh process: a warm-up generate, then the median of
``--repeats`` timed ones. Peak extra memory is the RSS high-water mark during the timed generates
minus the RSS just before them (CPU), or torch's peak allocated bytes (CUDA).

Two CPU regimes: ``mid`` (8 layers, hidden 512) is compute-bound, each layer's arithmetic hides
the probe's fixed per-call cost; ``deep-narrow`` (32 layers, hidden 64) is dispatch-bound like
batch-1 decoding of a 7B model on a GPU, where every extra tensor operation per layer and token shows.

``--paired``: plain sdpa and the probe in one process, their timed calls alternating; a probed call
is the whole of what a user pays: ``AttentionProbe`` set-up, ``generate`` and ``probe.stats()``
(the deferred scoring runs at the end of generate and in stats). ``--invocations N`` repeats each
paired cell in N separate processes and reports their median. ``--compiled``: both sides decode
with a static cache and the decoding step compiled (inductor; the warm-up call compiles).

    python benchmarks/bench_probe.py                      # CPU, compute-bound (about 10 minutes on 2 cores)
    python benchmarks/bench_probe.py --shape deep-narrow --lengths 700 4096 --new-tokens 48 --threads 1 --clock cpu
    python benchmarks/bench_probe.py --paired --invocations 3 --shape deep-narrow --lengths 700 4096 --new-tokens 48 --threads 1 --clock cpu --stat min --repeats 7
    python benchmarks/bench_probe.py --paired --compiled --invocations 3 --shape deep-narrow --lengths 700 --new-tokens 48 --threads 1 --clock cpu --stat min --repeats 7
    python benchmarks/bench_probe.py --gpu                # every GPU row of RESULTS.md in one run (bf16, random weights)
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from measure import compare_methods, comparison_parser, run_fresh, settings_line, time_and_peak, use_threads

SHAPES = {
    # mid-size random model: 8 layers, hidden 512, 8 heads (compute-bound on a CPU)
    "mid": dict(num_layers=8, hidden_size=512, num_heads=8, num_kv_heads=8, vocab_size=32064),
    # deep and narrow: 32 layers, hidden 64, 8 heads / 2 KV heads (dispatch-bound on a CPU)
    "deep-narrow": dict(num_layers=32, hidden_size=64, num_heads=8, num_kv_heads=2, vocab_size=32064),
    # LLaVA-1.5-7B's language model (Vicuna-7B): 32 layers, hidden 4096, 32 heads
    "llava-7b": dict(num_layers=32, hidden_size=4096, num_heads=32, num_kv_heads=32, vocab_size=32064),
    # Qwen2.5-VL-7B's language model as a Llama of the same shape: 28 layers, hidden 3584, 28 heads / 4 KV heads
    "qwen2.5-vl-7b": dict(num_layers=28, hidden_size=3584, num_heads=28, num_kv_heads=4, vocab_size=152064),
}
#: method -> (attention implementation, probed)
METHODS = {
    "sdpa": ("sdpa", False),
    "probe": ("sdpa", True),
    "eager": ("eager", False),
    "flash": ("flash_attention_2", False),
    "probe-flash": ("flash_attention_2", True),
}
CPU_METHODS = ("sdpa", "probe", "eager")
TEXT_TOKENS = 124  # the rest of each prompt is "image": 700 tokens -> 576 image tokens as in LLaVA-1.5
#: the GPU rows: (shape, prompt tokens, batch); eager is not run (O(S^2) memory at these lengths)
GPU_PLAN = (
    ("llava-7b", 700, 1),
    ("llava-7b", 700, 8),
    ("llava-7b", 8192, 1),
    ("llava-7b", 8192, 8),
    ("qwen2.5-vl-7b", 16384, 1),
)
GPU_METHODS = ("sdpa", "probe", "flash", "probe-flash")
#: compiled decoding (static cache, inductor with CUDA graphs), paired: (shape, prompt tokens, batch)
GPU_COMPILED_PLAN = (("llava-7b", 700, 1), ("llava-7b", 700, 8))


def run_one(args) -> dict:
    import torch

    from lmms_textdom.core.modality import PositionClasses
    from lmms_textdom.core.probe import AttentionProbe, install
    from lmms_textdom.tiny import build_llama

    torch.set_grad_enabled(False)
    use_threads(args)
    dtype = getattr(torch, args.dtype)
    impl, probed = METHODS[args.method]
    torch.set_default_dtype(dtype)
    with torch.device(args.device):  # random weights made in place: a 7B model in seconds on a GPU
        model, _ = build_llama(**SHAPES[args.shape], attn_implementation=impl, initializer_range=0.02)
    torch.set_default_dtype(torch.float32)
    if probed:
        install(model)  # once, as the adapters do at load; inactive, it only forwards
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(10, model.config.vocab_size, (args.batch, args.length), generator=gen).to(args.device)
    mask = torch.ones_like(ids)
    image = (torch.arange(args.length) >= TEXT_TOKENS).long()
    classes = PositionClasses(("text", "image"), image.expand(args.batch, -1))
    kwargs = dict(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False)
    if args.method == "eager":
        kwargs.update(output_attentions=True, return_dict_in_generate=True)
    path = {}

    def generate():
        if probed:
            with AttentionProbe(model, classes) as probe:
                model.generate(input_ids=ids, attention_mask=mask, **kwargs)
            probe.stats()
            path["probe_path"] = probe.path
        else:
            out = model.generate(input_ids=ids, attention_mask=mask, **kwargs)
            del out

    timing = time_and_peak(generate, args.repeats, args.device, args.clock, args.stat)
    return {"method": args.method, "length": args.length, "batch": args.batch, **timing, **path}


def run_paired(args) -> dict:
    """Plain sdpa and the probe in one process, generate calls alternating, ``stat`` of each.

    On a shared machine load shifts between processes and over minutes; alternating the two in
    one process exposes both to the same load, so their ratio is steadier than across processes.
    """
    import torch

    from lmms_textdom.core.modality import PositionClasses
    from lmms_textdom.core.probe import AttentionProbe, install
    from lmms_textdom.tiny import build_llama
    from measure import CLOCKS, STATS

    torch.set_grad_enabled(False)
    use_threads(args)
    cpu = args.device == "cpu"
    torch.set_default_dtype(getattr(torch, args.dtype))
    with torch.device(args.device):
        plain, _ = build_llama(**SHAPES[args.shape], initializer_range=0.02)
        probed, _ = build_llama(**SHAPES[args.shape], initializer_range=0.02)
    torch.set_default_dtype(torch.float32)
    install(probed)
    ids = torch.randint(10, plain.config.vocab_size, (args.batch, args.length), generator=torch.Generator().manual_seed(0))
    ids = ids.to(args.device)
    mask = torch.ones_like(ids)
    classes = PositionClasses(("text", "image"), (torch.arange(args.length) >= TEXT_TOKENS).long().expand(args.batch, -1))
    kwargs = dict(input_ids=ids, attention_mask=mask, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False)
    if args.compiled:
        from lmms_textdom.core.compiled import compiled_decoding

        kwargs.update(compiled_decoding())  # each model compiles in its warm-up call below

    sync = (lambda: None) if cpu else torch.cuda.synchronize

    def with_probe():
        with AttentionProbe(probed, classes) as probe:
            probed.generate(**kwargs)
        probe.stats()
        return probe.path

    compile_start = time.perf_counter()
    path = with_probe()
    plain.generate(**kwargs)
    sync()
    warm_up = time.perf_counter() - compile_start  # compiled: both models' compilation
    now, times = CLOCKS[args.clock], {"sdpa": [], "probe": []}
    for _ in range(args.repeats):
        for name, fn in (("sdpa", lambda: plain.generate(**kwargs)), ("probe", with_probe)):
            start = now()
            fn()
            sync()
            times[name].append(now() - start)
    summary = {name: STATS[args.stat](t) for name, t in times.items()}
    layer_tokens = plain.config.num_hidden_layers * args.new_tokens
    cell = {
        "length": args.length, "batch": args.batch, **summary, "ratio": summary["probe"] / summary["sdpa"],
        "us_per_layer_token": 1e6 * (summary["probe"] - summary["sdpa"]) / layer_tokens, "warm_up": warm_up, "probe_path": path,
    }  # fmt: skip
    if not cpu:  # the probe's CPU time says little where the GPU runs behind
        return cell
    # Then the probe's own CPU time inside each probed generate, against the rest of that same
    # generate: both halves see the same load, so this share is steady where whole runs are not.
    own = time_inside_probe()
    shares = []
    for _ in range(args.repeats):
        own[0], start = 0.0, time.thread_time()
        with_probe()
        total = time.thread_time() - start
        shares.append(own[0] / (total - own[0]))
    share = statistics.median(shares)
    own = 1e6 * share * summary["probe"] / (1 + share) / layer_tokens
    return {**cell, "own_share": share, "own_us_per_layer_token": own}


def time_inside_probe() -> list[float]:
    """Wrap the probe's entry points with a thread-CPU-time counter; returns the running total [seconds].

    Counts every probe function (the per-layer stash, the batched passes, set-up, stats), not the
    one Python call per attention layer that routes through the probe function.
    """
    from lmms_textdom.core import probe

    spent, depth = [0.0], [0]

    def counted(fn):
        def wrapper(*args, **kwargs):
            if depth[0]:
                return fn(*args, **kwargs)
            depth[0], start = 1, time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[0] += time.thread_time() - start
                depth[0] = 0

        return wrapper

    for cls, names in ((probe._Recorder, ("record", "flush")), (probe.AttentionProbe, ("__init__", "__enter__", "__exit__", "stats"))):
        for name in names:
            setattr(cls, name, counted(getattr(cls, name)))
    return spent


def paired_row(label, cell: dict) -> str:
    own = f"{100 * cell['own_share']:.1f} % ({cell['own_us_per_layer_token']:.1f} µs)" if "own_share" in cell else "not measured on a GPU"
    return (
        f"| {label} | {cell['sdpa']:.3f} s | {cell['probe']:.3f} s | **{cell['ratio']:.3f}x** | {cell['us_per_layer_token']:.1f} µs "
        f"| {own} | {cell['warm_up']:.0f} s |"
    )


def print_paired(args) -> None:
    decoding = "compiled decoding (static cache, inductor)" if args.compiled else "eager decoding"
    print(settings_line(args) + f" batch={args.batch}, {decoding}, sdpa and probe alternating in one process, {args.invocations} invocation(s)")
    print(
        "| prompt S | plain sdpa | probe (set-up + generate + stats) | probe / plain | extra per layer and token "
        "| probe's own CPU time / rest of the probed generate (per layer and token) | warm-up (compilation) |"
    )
    print("|---|---|---|---|---|---|---|")
    flags = ["--paired", "--batch", str(args.batch)] + (["--compiled"] if args.compiled else [])
    for length in args.lengths:
        cells = []
        for i in range(args.invocations):
            cell = run_fresh(__file__, args, *flags, "--length", str(length))
            if "error" in cell:
                print(f"| {length} | failed: {cell['error']} | | | | | |", flush=True)
                continue
            cells.append(cell)
            if args.invocations > 1:
                print(paired_row(f"{length} (#{i + 1})", cell), flush=True)
        if len(cells) > 1:
            median = {key: statistics.median(c[key] for c in cells) for key in cells[0] if isinstance(cells[0][key], float)}
            print(paired_row(f"**{length}, median of {len(cells)}**", median), flush=True)
        elif cells:
            print(paired_row(length, cells[0]), flush=True)


def print_table(args, lengths, batch: int, methods) -> None:
    args.methods = list(methods)
    print(settings_line(args) + f" batch={batch}")
    print("| prompt S | " + " | ".join(methods) + " |")
    print("|---|" + "---|" * len(methods))
    for length in lengths:
        skipped = f"skipped (> {args.eager_max_length} tokens)" if length > args.eager_max_length else ""
        _, shown = compare_methods(__file__, args, tuple(methods), ("--length", str(length), "--batch", str(batch)), skipped)
        print(f"| {length} | {shown} |", flush=True)


def main() -> None:
    parser = comparison_parser(__doc__, SHAPES, tuple(METHODS))
    parser.set_defaults(methods=list(CPU_METHODS))
    parser.add_argument("--lengths", type=int, nargs="+", default=[700, 1024, 4096, 16384])
    parser.add_argument("--batch", type=int, default=1, help="sequences per generate call (same length, no padding)")
    parser.add_argument("--eager-max-length", type=int, default=4096, help="skip eager above this (it needs O(S^2) memory)")
    parser.add_argument("--gpu", action="store_true", help="the GPU rows: cuda, bfloat16, " + ", ".join(f"{s} S={n} B={b}" for s, n, b in GPU_PLAN))
    parser.add_argument("--paired", action="store_true", help="sdpa and probe alternating in one process (steadier ratio)")
    parser.add_argument("--invocations", type=int, default=1, help="--paired: separate processes per cell, then their median")
    parser.add_argument("--compiled", action="store_true", help="--paired: compiled decoding on both sides (static cache, inductor)")
    parser.add_argument("--length", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_paired(args) if args.paired else run_one(args)))
        return
    if args.paired:
        print_paired(args)
        return
    if not args.gpu:
        print_table(args, args.lengths, args.batch, args.methods)
        return
    args.device, args.dtype = "cuda", "bfloat16"
    for shape, length, batch in GPU_PLAN:
        args.shape = shape
        print_table(args, [length], batch, GPU_METHODS)
    args.compiled, args.invocations, args.clock = True, 1, "wall"
    for shape, length, batch in GPU_COMPILED_PLAN:
        args.shape, args.lengths, args.batch = shape, [length], batch
        print_paired(args)


if __name__ == "__main__":
    main()
