"""The embedded default: the probe on a tiny random-weight LLaVA, offline, in seconds."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from lmms_textdom.metrics import GROUPS, aggregate_samples
from lmms_textdom.modality import classify_tokens
from lmms_textdom.probe import AttentionProbe, output_lengths
from lmms_textdom.tiny import build_llava

QUESTIONS = [
    "what is shown in the image ?",
    "which option is correct ? answer with the option letter from the given choices directly . a b c d",
    "describe the picture",
]


def drawn_image(seed: int, size: int = 30) -> Image.Image:
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(0, 255, 3)))
    draw = ImageDraw.Draw(image)
    for _ in range(3):
        x0, y0 = rng.integers(0, size // 2, 2)
        draw.rectangle([int(x0), int(y0), int(x0) + size // 3, int(y0) + size // 3], fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
    return image


def run_demo() -> None:
    model, processor = build_llava(num_layers=8)
    processor.tokenizer.padding_side = "left"
    prompts = [
        processor.apply_chat_template([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": q}]}], add_generation_prompt=True)
        for q in QUESTIONS
    ]
    inputs = processor(text=prompts, images=[drawn_image(i) for i in range(len(prompts))], return_tensors="pt", padding=True)
    classes = classify_tokens(inputs["input_ids"], {"image": model.config.image_token_id}, inputs["attention_mask"])
    with AttentionProbe(model, classes) as probe:
        out = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    prompt_len = inputs["input_ids"].shape[1]
    stats = probe.stats(output_lengths(out[:, prompt_len:], model.generation_config.eos_token_id, processor.tokenizer.pad_token_id))
    table = aggregate_samples(stats)
    print("lmms-textdom demo: tiny LLaVA with RANDOM weights (numbers exercise the code, not a real model)")
    print(f"{len(stats)} samples, {stats[0].num_layers} language-model layers, mean of per-sample values\n")
    print("| metric | " + " | ".join(GROUPS) + " |")
    print("|---|" + "---|" * len(GROUPS))
    for metric in ("mdi", "aei"):
        cells = [table[f"{metric}_{g}"] for g in GROUPS]
        print(f"| {metric.upper()} | " + " | ".join("n/a" if c.value is None else f"{c.value:.3f}" for c in cells) + " |")
