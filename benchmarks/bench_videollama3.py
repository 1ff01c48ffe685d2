"""The attention probe on VideoLLaMA3-shaped models with long videos: time and memory next to plain sdpa.

A random-weight VideoLLaMA3 (SigLIP-NaViT tower + projector + Qwen2 language model, native classes,
loaded from a tiny DAMO-layout checkpoint through ``videollama3_textdom``) gets one question about a
video of 448 x 448 noise frames: 256 merged tokens per frame at merge 2, none dropped by the
token compression (every pixel changes), so ``--frames`` 32 / 64 give 8,192 / 16,384 video
tokens (64 frames of 448 x 448 is exactly the original's 16,384-token budget). For each (method,
frames), in a fresh process: the adapter builds the inputs once (not timed), then a warm-up and
the median of ``--repeats`` generates of exactly ``--new-tokens`` tokens, vision tower included.
Methods: plain sdpa (no measurement) and the probe (what ``videollama3_textdom`` runs). Eager +
``output_attentions`` is not run: its prefill attentions alone are layers x heads x S² floats.

    python benchmarks/bench_videollama3.py --threads 1 --clock cpu                 # CPU, small shape
    python benchmarks/bench_videollama3.py --shape videollama3-7b --device cuda --dtype bfloat16
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from measure import compare_methods, comparison_parser, settings_line, time_and_peak, use_threads

SHAPES = {
    # small: 4-layer tower 128 wide + 8-layer GQA language model 512 wide
    "mid": dict(vision_layers=4, vision_hidden_size=128, vision_heads=4, num_layers=8, hidden_size=512, num_heads=8, num_kv_heads=2),
    # VideoLLaMA3-7B: SigLIP-NaViT 27 x 1152 (16 heads) + Qwen2.5-7B 28 x 3584 (28 heads, 4 KV heads)
    "videollama3-7b": dict(vision_layers=27, vision_hidden_size=1152, vision_intermediate_size=4304, vision_heads=16,
                           num_layers=28, hidden_size=3584, intermediate_size=18944, num_heads=28, num_kv_heads=4),
}  # fmt: skip
METHODS = ("sdpa", "probe")
SIDE = 448
QUESTION = "What happens in the video ? Describe the main event and the objects in it ."


def noise_clip(frames: int):
    from PIL import Image

    from lmms_textdom.models.videollama3.frames import Clip

    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)) for _ in range(frames)]
    return Clip(images, list(range(frames)), [float(k) for k in range(frames)])


def run_one(args) -> dict:
    import torch

    from lmms_textdom.core.modality import classify_tokens
    from lmms_textdom.core.probe import AttentionProbe
    from lmms_textdom.models.videollama3.adapter import VideoLlama3Textdom
    from lmms_textdom.models.videollama3.inputs import encode_batch

    torch.set_grad_enabled(False)
    use_threads(args)
    adapter = VideoLlama3Textdom(pretrained=str(args.checkpoint), device=args.device, dtype=args.dtype, textdom=args.method == "probe")
    model, config = adapter.model, adapter.model.config
    encoded = encode_batch(adapter.tokenizer, [(QUESTION, [noise_clip(args.frames_one)])])
    classes = classify_tokens(encoded.inputs["input_ids"], {"image": config.image_token_id, "video": config.video_token_id})
    inputs = adapter._to_device(encoded.inputs)
    kwargs = dict(max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False)

    def generate():
        if args.method == "probe":
            with AttentionProbe(model, classes) as probe:
                model.generate(**inputs, **kwargs)
            probe.stats()
        else:
            model.generate(**inputs, **kwargs)

    counts = classes.counts()[0]
    measured = time_and_peak(generate, args.repeats, args.device, args.clock)
    return {"method": args.method, "frames": args.frames_one, "visual": counts[2], "prompt": sum(counts), **measured}


def main() -> None:
    parser = comparison_parser(__doc__, SHAPES, METHODS)
    parser.add_argument("--frames", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--frames-one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--checkpoint", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args)))
        return

    from lmms_textdom.tiny.videollama3 import save_videollama3

    with tempfile.TemporaryDirectory() as folder:
        checkpoint = save_videollama3(Path(folder) / "ckpt", initializer_range=0.02, **SHAPES[args.shape])
        print(settings_line(args))
        print("| frames | video tokens (prompt) | plain sdpa | probe |")
        print("|---|---|---|---|")
        for frames in args.frames:
            flags = ("--frames-one", str(frames), "--checkpoint", str(checkpoint))
            cells, shown = compare_methods(__file__, args, METHODS, flags)
            sizes = next((c for c in cells.values() if "visual" in c), {})
            print(f"| {frames} | {sizes.get('visual', '?')} ({sizes.get('prompt', '?')}) | {shown} |", flush=True)


if __name__ == "__main__":
    main()
