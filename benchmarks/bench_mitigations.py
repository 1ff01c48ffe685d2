"""Cost of the mitigation switches: one batch through the LLaVA adapter, plain vs each switch.

A random-weight LLaVA of the given shape (its image gives (image_size / patch_size)^2 tokens) is
saved once; each setting loads it into the adapter and answers the same batch (a warm-up, then the
median of ``--repeats``), with the probe on. Reported: CPU seconds (``--clock cpu``, robust on a shared
machine) or wall seconds, and the ratio to the plain run.

    python benchmarks/bench_mitigations.py --threads 1 --clock cpu
    python benchmarks/bench_mitigations.py --device cuda --layers 32 --hidden 4096 --heads 32 --image-size 336 --patch 14
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

def random_image(seed: int, size: int) -> Image.Image:
    return Image.fromarray((np.random.default_rng(seed).random((size, size, 3)) * 255).astype("uint8"))


SETTINGS = {
    "plain": {},
    "attn_boost pai 0.5": {"attn_boost": 0.5},
    "attn_boost scale 0.5": {"attn_boost": 0.5, "attn_boost_mode": "scale"},
    "attn_shift 1.2:0.8": {"attn_shift": "1.2:0.8"},
    "vcd alpha 1": {"vcd_alpha": 1.0},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=336)
    parser.add_argument("--patch", type=int, default=14)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from lmms_textdom.models.base import Request
    from lmms_textdom.models.llava.adapter import LlavaHfTextdom
    from lmms_textdom.tiny import save_llava

    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    folder = Path(tempfile.mkdtemp()) / "llava"
    save_llava(folder, num_layers=args.layers, hidden_size=args.hidden, num_heads=args.heads, num_kv_heads=args.heads,
               image_size=args.image_size, patch_size=args.patch, vision_layers=2)  # fmt: skip
    gen = {"max_new_tokens": args.new_tokens, "min_new_tokens": args.new_tokens}
    batch = [Request(f"question {i} : what is shown in the image ?", [random_image(i, args.image_size)], {}, gen) for i in range(args.batch)]
    print(f"LLaVA {args.layers} layers, hidden {args.hidden}, {(args.image_size // args.patch) ** 2} image tokens, batch {args.batch}, "
          f"{args.new_tokens} new tokens, {args.device}, {args.clock} seconds (median of {args.repeats})")  # fmt: skip
    base = None
    for name, extra in SETTINGS.items():
        adapter = LlavaHfTextdom(pretrained=str(folder), device=args.device, batch_size=args.batch, **extra)
        adapter._run_batch(batch)  # warm-up
        times = []
        for _ in range(args.repeats):
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            start = clock()
            adapter._run_batch(batch)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(clock() - start)
        median = statistics.median(times)
        base = base or median
        print(f"  {name:22s} {median:7.3f} s   x{median / base:.2f}")


if __name__ == "__main__":
    main()
