"""``lmms-textdom demo``: one family's embedded default through the real lmms-eval CLI, offline."""

from __future__ import annotations

from pathlib import Path

from lmms_textdom.integration.runner import DEFAULT_CACHE, lmms_eval_command, offline_env, run_checked
from lmms_textdom.tiny.defaults import SHORT_ANSWERS, embedded_setup

DEFAULT_MODEL = "llava_hf_textdom"


def real_command(model: str, tasks: str, model_args: str) -> str:
    return f"  lmms-eval --model {model} --model_args {model_args} \\\n      --tasks {tasks} --batch_size 8 --output_path runs/ --log_samples"


def run_demo(
    model: str = DEFAULT_MODEL,
    cache: Path = DEFAULT_CACHE,
    tasks: str | None = None,
    limit: int | None = None,
    model_args: str = "",
    gen_kwargs: str | None = None,
    batch_size: int = 2,
    output: Path | None = None,
) -> dict:
    setup = embedded_setup(model, cache)
    tasks = tasks or setup.tasks
    output = Path(output) if output else Path(cache) / "runs" / "demo" / model
    print(setup.banner, flush=True)
    args = ",".join(a for a in (f"pretrained={setup.pretrained}", setup.model_args, model_args) if a)
    extra = ["--batch_size", str(batch_size), "--verbosity", "WARNING"] + (["--limit", str(limit)] if limit else [])
    gen_kwargs = setup.gen_kwargs if gen_kwargs is None else gen_kwargs
    extra += ["--gen_kwargs", gen_kwargs] if gen_kwargs else []
    results = run_checked(lmms_eval_command(model, args, tasks, output, *extra), offline_env(setup.data_root), output)
    print(f"\nResults and per-sample logs are under {output}.")
    print("For a real checkpoint on a GPU (hub access, or LMMS_TEXTDOM_DATA pointing at a local copy):")
    print(real_command(model, setup.tasks, setup.real))
    return results


def add_arguments(parser) -> None:
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"lmms-eval model id (default {DEFAULT_MODEL}); its tiny embedded default runs")
    parser.add_argument("--tasks", help="default: the family's own task (e.g. mmmu_pro_textdom, iemocap_textdom)")
    parser.add_argument("--limit", type=int, help="documents per task")
    parser.add_argument("--model-args", default="", help="further model_args, e.g. nontext_repeat=2,knockout_layers=0-1")
    parser.add_argument("--gen-kwargs", help=f"lmms-eval --gen_kwargs (default {SHORT_ANSWERS}: random weights rarely stop)")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--output", type=Path, help="folder for the run (default .textdom-cache/runs/demo/<model>)")


def run_from_args(args) -> dict:
    return run_demo(
        args.model, tasks=args.tasks, limit=args.limit, model_args=args.model_args, gen_kwargs=args.gen_kwargs,
        batch_size=args.batch_size, output=args.output,
    )  # fmt: skip
