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

from measure import compare_methods, comparison_parser, settings_line, time_and_peak, use_threads

SHAPES = {
    # mid-size random model of the issue: 8 layers, hidden 512, 8 heads
    "mid": dict(num_layers=8, hidden_size=512, num_heads=8, num_kv_heads=8, vocab_size=32064),
    # LLaVA-1.5-7B's language model (Vicuna-7B): 32 layers, hidden 4096, 32 heads
    "llava-7b": dict(num_layers=32, hidden_size=4096, num_heads=32, num_kv_heads=32, vocab_size=32064),
}
METHODS = ("sdpa", "probe", "eager")
TEXT_TOKENS = 124  # the rest of each prompt is "image": 700 tokens -> 576 image tokens as in LLaVA-1.5


def run_one(args) -> dict:
    import torch

    from lmms_textdom.core.modality import PositionClasses
    from lmms_textdom.core.probe import AttentionProbe
    from lmms_textdom.tiny import build_llama

    torch.set_grad_enabled(False)
    use_threads(args)
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

    return {"method": args.method, "length": args.length, **time_and_peak(generate, args.repeats, args.device, args.clock)}


def main() -> None:
    parser = comparison_parser(__doc__, SHAPES, METHODS)
    parser.add_argument("--lengths", type=int, nargs="+", default=[700, 1024, 4096, 16384])
    parser.add_argument("--eager-max-length", type=int, default=4096, help="skip eager above this (it needs O(S^2) memory)")
    parser.add_argument("--length", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args)))
        return

    print(settings_line(args))
    print("| prompt S | plain sdpa | probe | eager + output_attentions |")
    print("|---|---|---|---|")
    for length in args.lengths:
        skipped = f"skipped (> {args.eager_max_length} tokens)" if length > args.eager_max_length else ""
        _, shown = compare_methods(__file__, args, METHODS, ("--length", str(length)), skipped)
        print(f"| {length} | {shown} |", flush=True)

if __name__ == "__main__":
    main()
