"""Long video inputs through ``qwen2_5_vl_textdom``: memory and time vs visual tokens, and the pruning score's cost.

A Qwen2.5-VL-shaped random model gets one question about a 448 x 448 video; ``--frames`` sets
how many frames are sampled (each pair of frames is 16 x 16 = 256 merged tokens, so 8 / 16 / 32 /
64 frames are 1,024 / 2,048 / 4,096 / 8,192 visual tokens). For each (method, frames), in a fresh
process: the adapter builds the inputs once (decoding and preprocessing are not timed), then a
warm-up and the median of ``--repeats`` generates of exactly ``--new-tokens`` tokens, vision tower
included. Methods: plain sdpa (no measurement), the probe (what ``qwen2_5_vl_textdom`` runs), and
eager + ``output_attentions`` on the language model (the usual way to read attention). Extra
memory = RSS high-water mark during the timed generates minus RSS before them (CPU), or torch's
peak allocated bytes (CUDA).

Then the received-attention score used by ``prune_ratio``: the vision tower on the largest video
with and without the scorer, and the pruned runs' speed.

    python benchmarks/bench_video.py                        # CPU (about 15 minutes on 2 cores)
    python benchmarks/bench_video.py --shape qwen-7b --device cuda --dtype bfloat16 --frames 16 64 256
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from measure import compare_methods, comparison_parser, settings_line, time_and_peak, timed, use_threads

SHAPES = {
    # mid-size: 8-block ViT, 128 wide (full attention in blocks 3 and 7) + 8-layer GQA language model
    "mid": dict(vision_depth=8, vision_hidden_size=128, vision_heads=4, fullatt_block_indexes=(3, 7), window_size=112,
                num_layers=8, hidden_size=512, num_heads=8, num_kv_heads=4, vocab_size=32064),
    # Qwen2.5-VL-7B: 32-block ViT (1280 wide, full attention 7/15/23/31) + Qwen2-7B (28 x 3584, 28 heads, 4 KV heads)
    "qwen-7b": dict(vision_depth=32, vision_hidden_size=1280, vision_intermediate_size=3420, vision_heads=16,
                    fullatt_block_indexes=(7, 15, 23, 31), window_size=112, num_layers=28, hidden_size=3584,
                    intermediate_size=18944, num_heads=28, num_kv_heads=4, vocab_size=152064),
}  # fmt: skip
METHODS = ("sdpa", "probe", "eager")
SIDE = 448  # frame side in pixels: 32 x 32 patches, 16 x 16 merged tokens per frame pair
QUESTION = "What happens in the video ? Describe the main event and the objects in it ."


def adapter_for(checkpoint: Path, args, frames: int, **model_args):
    from lmms_textdom.models.qwen2_5_vl.adapter import Qwen25VLTextdom

    return Qwen25VLTextdom(
        pretrained=str(checkpoint), device=args.device, dtype=args.dtype, max_frames=frames,
        video_min_pixels=SIDE * SIDE, video_max_pixels=SIDE * SIDE, **model_args,
    )  # fmt: skip


def run_one(args) -> dict:
    import torch

    from lmms_textdom.models.base import Request
    from lmms_textdom.core.probe import AttentionProbe

    torch.set_grad_enabled(False)
    use_threads(args)
    adapter = adapter_for(args.checkpoint, args, args.frames_one, textdom=args.method == "probe")
    model = adapter.model
    prepared = adapter.prepare([Request(QUESTION, [str(args.video)], {}, {})])
    inputs = adapter._to_device(prepared.inputs)
    kwargs = dict(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False)
    if args.method == "eager":
        model.set_attn_implementation({"text_config": "eager"})
        kwargs.update(output_attentions=True, return_dict_in_generate=True)

    def generate():
        if args.method == "probe":
            with AttentionProbe(model, prepared.classes) as probe:
                model.generate(**inputs, **kwargs)
            probe.stats()
        else:
            out = model.generate(**inputs, **kwargs)
            del out

    counts = prepared.classes.counts()[0]
    measured = time_and_peak(generate, args.repeats, args.device, args.clock)
    return {"method": args.method, "frames": args.frames_one, "visual": counts[2], "prompt": sum(counts), **measured}


def scoring_share(shape: dict, patches: int, segment: int) -> float:
    """FLOPs of the score (q·kᵀ and softmax of one full-attention block) over the tower's FLOPs."""
    width, heads, depth = shape["vision_hidden_size"], shape["vision_heads"], shape["vision_depth"]
    intermediate = shape.get("vision_intermediate_size") or 2 * width
    full = len(shape["fullatt_block_indexes"])
    window = (shape["window_size"] // 14) ** 2  # patches per attention window
    dense = 2 * patches * width * (4 * width + 3 * intermediate)  # qkv + out projections, gated MLP
    attention = lambda span: 4 * patches * span * width  # noqa: E731 - q·kᵀ and p·v
    tower = depth * dense + full * attention(segment) + (depth - full) * attention(window)
    return (2 * patches * segment * width + 5 * patches * segment * heads) / tower


def scoring_cost(checkpoint: Path, video: Path, args) -> None:
    """Vision tower on the largest video with and without the received-attention scorer; pruned speed."""
    import torch

    from lmms_textdom.models.base import Request
    from lmms_textdom.editing.received_attention import ReceivedAttentionScorer

    torch.set_grad_enabled(False)
    use_threads(args)
    frames = max(args.frames)
    adapter = adapter_for(checkpoint, args, frames)
    request = Request(QUESTION, [str(video)], {}, {})
    inputs = adapter._to_device(adapter.prepare([request]).inputs)
    visual = adapter.model.model.visual
    scorer = ReceivedAttentionScorer(visual)
    pixels, grid = inputs["pixel_values_videos"], inputs["video_grid_thw"]
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)

    def tower(with_scores: bool):
        if not with_scores:
            return visual(pixels, grid_thw=grid)
        with scorer.recording():
            return visual(pixels, grid_thw=grid)

    plain, scored = [], []
    for _ in range(3):  # interleaved, so drift hits both alike
        plain.append(timed(lambda: tower(False), args.repeats, sync, args.clock))
        scored.append(timed(lambda: tower(True), args.repeats, sync, args.clock))
    plain_t, scored_t = statistics.median(plain), statistics.median(scored)
    patches, segment = int(grid.prod()), int(grid[0, 1] * grid[0, 2])  # a frame pair attends within itself
    print(f"\nReceived-attention score, {patches} patches ({patches // 4} tokens): vision tower {plain_t * 1000:.0f} ms without, "
          f"{scored_t * 1000:.0f} ms with the scorer (measured +{max(scored_t - plain_t, 0) / plain_t:.1%}; analytic "
          f"{scoring_share(SHAPES[args.shape], patches, segment):.1%} of this tower's FLOPs, "
          f"{scoring_share(SHAPES['qwen-7b'], patches, segment):.1%} of Qwen2.5-VL-7B's)")  # fmt: skip

    # pruned runs: tower (+ score) + generate, from the same decoded and preprocessed video
    stock = adapter.prepare([request])
    print("\n| prune ratio | visual tokens kept | tower + scoring + generation |")
    print("|---|---|---|")
    base = None
    for ratio in args.ratios:
        pruned = adapter_for(checkpoint, args, frames, prune_ratio=ratio)
        gen = dict(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False)

        def generate():
            prepared = pruned.edited_inputs(stock.inputs, stock.classes) if ratio > 0 else stock
            pruned.model.generate(**pruned._to_device(prepared.inputs), **gen)
            return prepared

        kept = generate().classes.counts()[0][2]
        seconds = timed(generate, args.repeats, sync, args.clock)
        base = base or seconds
        speed = "" if seconds == base else f" ({base / seconds:.2f}x faster)"
        print(f"| {ratio:.2f} | {kept} | {seconds:.2f} s{speed} |", flush=True)


def main() -> None:
    parser = comparison_parser(__doc__, SHAPES, METHODS)
    parser.add_argument("--frames", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.0, 0.75, 0.9])
    parser.add_argument("--eager-max-frames", type=int, default=16, help="skip eager above this (O(S^2) memory)")
    parser.add_argument("--frames-one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--video", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args)))
        return

    from lmms_textdom.tiny.qwen2_5_vl import save_qwen2_5_vl
    from lmms_textdom.tiny.videos import write_video

    with tempfile.TemporaryDirectory() as folder:
        checkpoint = save_qwen2_5_vl(Path(folder) / "ckpt", initializer_range=0.02, **SHAPES[args.shape])
        video = write_video(Path(folder) / "clip.mp4", num_frames=4 * max(args.frames), size=(SIDE, SIDE), fps=24)
        print(settings_line(args))
        print("| frames | visual tokens (prompt) | plain sdpa | probe | eager + output_attentions |")
        print("|---|---|---|---|---|")
        for frames in args.frames:
            skipped = f"skipped (> {args.eager_max_frames} frames)" if frames > args.eager_max_frames else ""
            flags = ("--frames-one", str(frames), "--checkpoint", str(checkpoint), "--video", str(video))
            cells, shown = compare_methods(__file__, args, METHODS, flags, skipped)
            sizes = next((c for c in cells.values() if "visual" in c), {})
            print(f"| {frames} | {sizes.get('visual', '?')} ({sizes.get('prompt', '?')}) | {shown} |", flush=True)
        scoring_cost(checkpoint, video, args)


if __name__ == "__main__":
    main()
