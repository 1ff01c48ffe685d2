"""Pruning speed-up and [CLS]-scoring cost through ``llava_hf_textdom`` itself (probe on, as in use).

For each pruning ratio r: time to first token (generate 1 token: vision tower + projector + prefill)
and whole-generation time (32 tokens), median of repeats after a warm-up. Then the [CLS] scoring
cost: the vision tower's feature extraction with and without the scoring hooks.

    python benchmarks/bench_pruning.py                                   # CPU, LLaVA-1.5-shaped mid-size model
    python benchmarks/bench_pruning.py --shape llava-7b --device cuda --dtype bfloat16
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch
from measure import base_parser, timed, use_threads
from PIL import Image

SHAPES = {
    # CLIP at 336 px / 14 px patches (576 image tokens) with smaller widths; an 8-layer language model
    "mid": dict(image_size=336, patch_size=14, vision_hidden_size=256, vision_layers=8, vision_heads=8,
                hidden_size=512, num_layers=8, num_heads=8, num_kv_heads=8, vocab_size=32064),
    # LLaVA-1.5-7B: CLIP ViT-L/14-336 (24 layers, 1024 wide, 16 heads) + Vicuna-7B (32 x 4096, 32 heads)
    "llava-7b": dict(image_size=336, patch_size=14, vision_hidden_size=1024, vision_layers=24, vision_heads=16,
                     hidden_size=4096, num_layers=32, num_heads=32, num_kv_heads=32, vocab_size=32064),
}  # fmt: skip
QUESTION = "Which option is correct ? Answer with the option letter from the given choices directly . " * 2


def main() -> None:
    from lmms_textdom.models.base import Request
    from lmms_textdom.models.llava.adapter import LlavaHfTextdom
    from lmms_textdom.editing.pruning import ClsAttentionCapture, feature_layer_attention
    from lmms_textdom.tiny import save_llava

    parser = base_parser(__doc__, SHAPES)
    parser.set_defaults(repeats=5)
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.0, 0.75, 0.90, 0.95])
    args = parser.parse_args()
    torch.manual_seed(0)
    use_threads(args)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    image = Image.fromarray((np.random.default_rng(0).random((336, 336, 3)) * 255).astype("uint8"))

    with tempfile.TemporaryDirectory() as folder:
        checkpoint = save_llava(Path(folder) / "ckpt", initializer_range=0.02, **SHAPES[args.shape])
        print(f"shape={args.shape} device={args.device} dtype={args.dtype} repeats={args.repeats} new_tokens={args.new_tokens}")
        print("| prune ratio | image tokens kept | time to first token | whole generation |")
        print("|---|---|---|---|")
        base = {}
        for ratio in args.ratios:
            adapter = LlavaHfTextdom(pretrained=str(checkpoint), device=args.device, dtype=args.dtype, prune_ratio=ratio)

            def generate(tokens):
                request = Request(QUESTION, [image], {}, {"max_new_tokens": tokens, "min_new_tokens": tokens})
                return adapter._run_batch([request])

            kept = generate(1)[0][1]
            kept = int(__import__("json").loads(kept)["stats"]["counts"][1])
            ttft = timed(lambda: generate(1), args.repeats, sync, args.clock)
            whole = timed(lambda: generate(args.new_tokens), args.repeats, sync, args.clock)
            base = base or {"ttft": ttft, "whole": whole}
            ratio_cell = "" if ratio == args.ratios[0] else f" ({base['ttft'] / ttft:.2f}x faster)"
            whole_cell = "" if ratio == args.ratios[0] else f" ({base['whole'] / whole:.2f}x faster)"
            print(f"| {ratio:.2f} | {kept} | {ttft * 1000:.0f} ms{ratio_cell} | {whole * 1000:.0f} ms{whole_cell} |", flush=True)

        # [CLS] scoring cost: the same feature extraction with and without the capture hooks
        model, config = adapter.model, adapter.model.config
        pixel_values = adapter.processor(images=[image], text=["<image>"], return_tensors="pt")["pixel_values"]
        pixel_values = pixel_values.to(adapter.device, adapter.dtype)
        capture = ClsAttentionCapture(feature_layer_attention(model.model.vision_tower, config.vision_feature_layer))

        @torch.inference_mode()
        def features(with_scores: bool):
            def run():
                return model.get_image_features(
                    pixel_values=pixel_values, vision_feature_layer=config.vision_feature_layer,
                    vision_feature_select_strategy=config.vision_feature_select_strategy,
                )  # fmt: skip

            if not with_scores:
                return run()
            with capture.recording():
                return run()

        plain, scored = [], []
        for _ in range(4):  # interleave to share drift between the two
            plain.append(timed(lambda: features(False), args.repeats * 4, sync, args.clock))
            scored.append(timed(lambda: features(True), args.repeats * 4, sync, args.clock))
        plain_t, scored_t = statistics.median(plain), statistics.median(scored)
        # Analytic share: one (N+1)-long dot product per head vs the tower's projections, MLP and attention
        vision = config.vision_config
        tokens, width = (vision.image_size // vision.patch_size) ** 2 + 1, vision.hidden_size
        tower_flops = vision.num_hidden_layers * (2 * tokens * width * (4 * width + 2 * vision.intermediate_size) + 4 * tokens**2 * width)
        scoring_flops = 2 * tokens * width + 5 * tokens * vision.num_attention_heads
        print(f"\n[CLS] scoring: vision features {plain_t * 1000:.1f} ms without, {scored_t * 1000:.1f} ms with the hooks "
              f"(measured share {max(scored_t - plain_t, 0) / plain_t:.1%}; analytic share {scoring_flops / tower_flops:.4%} of the tower's FLOPs)")  # fmt: skip


if __name__ == "__main__":
    main()
