"""What measuring a logged answer costs against generating it under the probe (``lmms-textdom measure``).

Same random model, same prompt, same answer: ``generate`` of N tokens under the attention probe
(the textdom=true route), then one teacher-forced forward pass over prompt + answer under the probe
(the measure route: ``core/forced.py``, ``AttentionProbe(answer_rows=N)``), each followed by
``probe.stats``. Both run in one process, alternating, so they see the same machine load; the
table gives each one's ``--stat`` over ``--repeats`` and their ratio. Shapes as in ``bench_probe.py``:
``mid`` is compute-bound on a CPU, ``deep-narrow`` dispatch-bound (like batch-1 decoding of a 7B
model on a GPU).

    python benchmarks/bench_measure.py --shape mid --threads 1 --clock cpu --stat min
    python benchmarks/bench_measure.py --shape deep-narrow --threads 1 --clock cpu --stat min
    python benchmarks/bench_measure.py --gpu        # Qwen2.5-VL-7B shape, bf16, 8k-token prompt
"""

from __future__ import annotations

import json

from bench_probe import SHAPES, TEXT_TOKENS
from measure import CLOCKS, STATS, base_parser, run_fresh, settings_line, use_threads

#: the GPU rows: (shape, prompt tokens, answer tokens)
GPU_PLAN = (("qwen2.5-vl-7b", 8192, 64), ("qwen2.5-vl-7b", 8192, 512))


def run_pair(args) -> dict:
    import torch

    from lmms_textdom.core.forced import forced_inputs
    from lmms_textdom.core.modality import PositionClasses
    from lmms_textdom.core.probe import AttentionProbe, install
    from lmms_textdom.tiny import build_llama

    torch.set_grad_enabled(False)
    use_threads(args)
    torch.set_default_dtype(getattr(torch, args.dtype))
    with torch.device(args.device):
        model, _ = build_llama(**SHAPES[args.shape], initializer_range=0.02)
    torch.set_default_dtype(torch.float32)
    install(model)
    model.generation_config.eos_token_id = None  # every answer runs to its full length
    ids = torch.randint(10, model.config.vocab_size, (1, args.length), generator=torch.Generator().manual_seed(0)).to(args.device)
    mask = torch.ones_like(ids)
    classes = PositionClasses(("text", "image"), (torch.arange(args.length) >= TEXT_TOKENS).long()[None])
    n = args.new_tokens
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)

    def generate():
        with AttentionProbe(model, classes) as probe:
            out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=n, do_sample=False)
        probe.stats()
        sync()
        return out[:, args.length :]

    answer = generate()
    inputs = forced_inputs(model, {"input_ids": ids, "attention_mask": mask}, answer)

    def measure():
        with AttentionProbe(model, classes, answer_rows=n) as probe:
            model(**inputs)
        probe.stats()
        sync()

    measure()
    now, times = CLOCKS[args.clock], {"generate": [], "measure": []}
    for _ in range(args.repeats):
        for name, fn in (("generate", generate), ("measure", measure)):
            start = now()
            fn()
            times[name].append(now() - start)
    summary = {name: STATS[args.stat](t) for name, t in times.items()}
    return {"length": args.length, "new_tokens": n, **summary, "ratio": summary["measure"] / summary["generate"]}


def print_rows(args, rows) -> None:
    print(settings_line(args).replace(f"new_tokens={args.new_tokens} ", "") + " batch=1, generate under the probe and measure alternating in one process")
    print("| shape | prompt S | answer N | generate (probe) | measure | measure / generate |")
    print("|---|---|---|---|---|---|")
    for shape, length, new_tokens in rows:
        args.shape, args.new_tokens = shape, new_tokens
        cell = run_fresh(__file__, args, "--length", str(length))
        if "error" in cell:
            print(f"| {shape} | {length} | {new_tokens} | failed: {cell['error']} | | |", flush=True)
            continue
        print(
            f"| {shape} | {length} | {new_tokens} | {cell['generate']:.3f} s | {cell['measure']:.3f} s | **{cell['ratio']:.3f}** |",
            flush=True,
        )


def main() -> None:
    parser = base_parser(__doc__, SHAPES)
    parser.add_argument("--lengths", type=int, nargs="+", default=[700])
    parser.add_argument("--answers", type=int, nargs="+", default=[64, 512], help="answer tokens generated, then measured")
    parser.add_argument("--gpu", action="store_true", help="the GPU rows: cuda, bfloat16, " + ", ".join(f"{s} S={n} N={a}" for s, n, a in GPU_PLAN))
    parser.add_argument("--one", action="store_true", help=argparse_suppress())
    parser.add_argument("--length", type=int, help=argparse_suppress())
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_pair(args)))
        return
    if args.gpu:
        args.device, args.dtype = "cuda", "bfloat16"
        print_rows(args, GPU_PLAN)
        return
    print_rows(args, [(args.shape, length, n) for length in args.lengths for n in args.answers])


def argparse_suppress():
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    main()
