"""``lmms-textdom sweep``: one real lmms-eval run per point of a model_args grid, each against the plain
greedy baseline on the same samples (``report/paired_sweep.py``).

    lmms-textdom sweep --model llava_hf_textdom --vary attn_boost=0,0.2,0.5 --limit 50

``--vary KEY=v1,v2,...`` (repeatable) spans the grid, one run per combination; ``--model_args`` holds
what every point shares (lmms-eval splits model_args on commas: values with two parts use ':').
The baseline is the shared model_args without any mitigation switch, decoded greedily at the same
generation settings, and is always run; ``--blind`` adds a run without the non-text input. Every
point is checked before the first run starts; finished points are not run again (resume).
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

from lmms_textdom.core.errors import UsageError
from lmms_textdom.integration.registry import model_class
from lmms_textdom.integration.runner import DEFAULT_CACHE
from lmms_textdom.mitigations.settings import SWITCH_ARGS, switches_from_args
from lmms_textdom.progress import track
from lmms_textdom.report.paired_sweep import write_all, write_manifest
from lmms_textdom.sweeps.grid import Point, make_grid

#: generation kwargs that make decoding sample; the baseline drops them and decodes greedily
SAMPLING_KEYS = ("do_sample", "temperature", "top_p", "top_k")
BASELINE, BLIND = "baseline", "blind"


def split_args(text: str) -> list[tuple[str, str]]:
    """lmms-eval's ``key=value,key=value`` as pairs, in order."""
    pairs = []
    for item in filter(None, (part.strip() for part in (text or "").split(","))):
        key, equals, value = item.partition("=")
        if not equals or not key.strip():
            raise UsageError(f"model_args must be key=value pairs joined by ',', got {item!r}")
        pairs.append((key.strip(), value.strip()))
    return pairs


def join_args(pairs) -> str:
    return ",".join(f"{k}={v}" for k, v in pairs)


def parse_vary(texts: list[str]) -> list[tuple[str, list[str]]]:
    """``KEY=v1,v2,...`` -> (key, values); the same key twice, or no value, is an error."""
    varied = []
    for text in texts or []:
        key, equals, values = text.partition("=")
        key = key.strip()
        values = [v.strip() for v in values.split(",") if v.strip()]
        if not equals or not key or not values:
            raise UsageError(f"--vary takes KEY=v1,v2,... (values of one model_arg), got {text!r}")
        if any(key == k for k, _ in varied):
            raise UsageError(f"--vary names {key} twice; give all its values in one --vary")
        if len(set(values)) != len(values):
            raise UsageError(f"--vary {key} repeats a value: {values}")
        varied.append((key, values))
    return varied


def slug(pairs) -> str:
    return re.sub(r"[^A-Za-z0-9._=+-]", "-", "__".join(f"{k}={v}" for k, v in pairs))


def greedy(gen_kwargs: str | None) -> str:
    """The same generation settings, decoded greedily."""
    kept = [(k, v) for k, v in split_args(gen_kwargs or "") if k not in SAMPLING_KEYS]
    return join_args([*kept, ("do_sample", "false"), ("temperature", "0")])


def grid_points(varied: list[tuple[str, list[str]]], switched=()) -> list[Point]:
    """One point per combination of the varied values (the first key slowest), each also carrying
    ``switched``: the shared model_args' switches, which the baseline goes without."""
    points = []
    for values in itertools.product(*[v for _, v in varied]):
        point = list(zip([k for k, _ in varied], values))
        points.append(Point(", ".join(f"{k}={v}" for k, v in point), slug(point), join_args([*switched, *point])))
    return points


def check_points(model: str, points: list[Point], shared: str, depth) -> None:
    """Every point's model_args as the adapter will read them, before any run (UsageError naming the point)."""
    from lmms_eval.utils import simple_parse_args_string

    from lmms_textdom.models.args import parse_model_args

    adapter = model_class(model)
    for point in points:
        given = simple_parse_args_string(",".join(a for a in (shared, point.model_args) if a))
        try:
            parsed = parse_model_args(adapter.model_args_spec(), given, adapter.MODEL_ID)
            switches_from_args(parsed, depth)
        except UsageError as exc:
            raise UsageError(f"point {point.name!r}: {exc}") from None
        except ValueError as exc:
            raise UsageError(f"point {point.name!r}: {adapter.MODEL_ID}: {exc}") from None


def run_sweep(
    model: str = "llava_hf_textdom",
    pretrained: str | None = None,
    model_args: str = "",
    tasks: str | None = None,
    vary: list[str] | None = None,
    blind: bool = False,
    limit: int | None = None,
    output: Path | None = None,
    gen_kwargs: str | None = None,
    batch_size: int = 2,
    device: str = "cpu",
    resamples: int = 1000,
    seed: int = 0,
) -> str:
    """Run the grid (resuming), print and return the paired table."""
    varied = parse_vary(vary)
    if not varied and not blind:
        raise UsageError("nothing to sweep: give --vary KEY=v1,v2,... (and/or --blind)")
    pairs = split_args(model_args)
    pretrained = pretrained or next((v for k, v in pairs if k == "pretrained"), None)
    known = {a.name for a in model_class(model).model_args_spec()}
    for key, _ in varied:
        if key not in known:
            raise UsageError(f"--vary {key}: {model} has no model_arg {key}; its model_args: {', '.join(sorted(known))}")
        if key == "pretrained":
            raise UsageError("--vary pretrained: a sweep compares settings of one checkpoint; run one sweep per checkpoint")
    shared = [(k, v) for k, v in pairs if k != "pretrained" and k not in SWITCH_ARGS and k not in dict(varied)]
    switched = [(k, v) for k, v in pairs if k in SWITCH_ARGS and k not in dict(varied)]  # every point's, not the baseline's
    output = Path(output) if output else DEFAULT_CACHE / "runs" / "sweep"
    grid = make_grid(model, pretrained, join_args(shared), tasks, output, gen_kwargs, limit, batch_size, device, model_class(model).DEFAULT_TASK)
    points = grid_points(varied, switched)
    baseline = Point(BASELINE, BASELINE, "", greedy(grid.gen_kwargs))
    extra = [Point(BLIND, BLIND, "blind=true", greedy(grid.gen_kwargs))] if blind else []
    from lmms_textdom.sweeps.knockout import language_model_depth

    depth = language_model_depth(grid.pretrained) or 1 << 16
    check_points(model, [baseline, *points, *extra], grid.model_args, depth)
    for point in track([baseline, *points, *extra], "sweep: lmms-eval runs", unit="run"):
        grid.run(point)
    manifest = write_manifest(output, model, grid.pretrained, grid.tasks, baseline.folder, [(p.name, p.folder) for p in points], BLIND if blind else None)
    text, written = write_all(manifest, output, resamples, seed)
    print(f"\n{text}")
    print("wrote:\n" + "\n".join(f"  {p}" for p in [manifest, *written]))
    return text


def add_arguments(parser) -> None:
    parser.add_argument("--model", default="llava_hf_textdom", help="lmms-eval model id; without a checkpoint, its tiny embedded default")
    parser.add_argument("--pretrained", help="checkpoint (hub id or folder); or pretrained= in --model_args; default: the embedded default, offline")
    parser.add_argument("--model_args", "--model-args", dest="model_args", default="", help="model_args every point shares (KEY=v joined by ',')")
    parser.add_argument("--tasks", help="default: the model's own task (DEFAULT_TASK of its adapter)")
    parser.add_argument("--vary", action="append", metavar="KEY=v1,v2,...", help="a model_arg and its values; repeat for a grid")
    parser.add_argument("--blind", action="store_true", help="also run without the non-text input (blind=true): what the text alone answers")
    parser.add_argument("--limit", type=int, help="documents per task")
    parser.add_argument("--output", type=Path, help="folder of the runs and the table (default .textdom-cache/runs/sweep)")
    parser.add_argument("--gen_kwargs", "--gen-kwargs", dest="gen_kwargs", help="lmms-eval --gen_kwargs of every point (the baseline decodes greedily)")
    parser.add_argument("--batch_size", "--batch-size", dest="batch_size", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--resamples", type=int, default=1000, help="paired bootstrap resamples (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")


def run_from_args(args) -> str:
    return run_sweep(
        model=args.model, pretrained=args.pretrained, model_args=args.model_args, tasks=args.tasks, vary=args.vary,
        blind=args.blind, limit=args.limit, output=args.output, gen_kwargs=args.gen_kwargs, batch_size=args.batch_size,
        device=args.device, resamples=args.resamples, seed=args.seed,
    )  # fmt: skip
