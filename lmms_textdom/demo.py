"""``make demo``: llava_hf_textdom on mmmu_pro_textdom through the real lmms-eval CLI, offline."""

from __future__ import annotations

from pathlib import Path

from lmms_textdom.integration.runner import DEFAULT_CACHE, lmms_eval_command, mmmu_pro_data, offline_env, run_checked, tiny_llava_checkpoint

REAL_COMMAND = """  lmms-eval --model llava_hf_textdom --model_args pretrained=llava-hf/llava-1.5-7b-hf \\
      --tasks mmmu_pro_textdom --batch_size 8 --output_path runs/ --log_samples"""


def run_demo(cache: Path = DEFAULT_CACHE) -> dict:
    checkpoint = tiny_llava_checkpoint(cache)
    data = mmmu_pro_data(cache)
    print("lmms-textdom demo: a tiny LLaVA with RANDOM weights on fabricated MMMU-Pro rows (offline).")
    print("The numbers exercise the whole pipeline; they say nothing about real models.\n", flush=True)
    command = lmms_eval_command(
        "llava_hf_textdom", f"pretrained={checkpoint}", "mmmu_pro_textdom", cache / "runs" / "demo",
        "--batch_size", "2", "--verbosity", "WARNING",
    )  # fmt: skip
    results = run_checked(command, offline_env(data), cache / "runs" / "demo")
    print(f"\nResults and per-sample logs are under {cache / 'runs' / 'demo'}.")
    print("For a real checkpoint on a GPU (hub access, or LMMS_TEXTDOM_DATA pointing at a local copy):")
    print(REAL_COMMAND)
    return results
