"""``lmms-textdom measure``: MDI/AEI of answers any engine generated, by one teacher-forced pass per batch.

For every sample of the given lmms-eval sample logs: the task's document by ``doc_id``, the request
our adapter would have got, the family's ``prepare``, the answer's tokens appended, one forward
pass under the probe (``TextdomModel.measure_batch``), the task's ``process_results`` on the
logged response. The output folder is shaped like lmms-eval's (``<date>_results.json`` and
``<date>_samples_<task>.jsonl`` under ``<output_path>/<model>/``), so ``lmms-textdom report``
reads it beside generate runs. Every check that needs no weights runs before the model loads.
Under ``torchrun`` / ``accelerate launch`` each rank measures every world-size-th sample and rank 0
gathers them, as lmms-eval does; finished samples are kept on disk (``resume.py``).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lmms_textdom.core.errors import UsageError
from lmms_textdom.integration.sample_logs import SampleLog, find_sample_logs, same_checkpoint
from lmms_textdom.measure.answers import FORCED, LOGGED_IDS, RETOKENIZED, Answer, from_log, logged_ids, logged_text, retokenize
from lmms_textdom.measure.resume import SampleStore, progress_key

DEFAULT_OUTPUT = "textdom_measured"
#: lmms-eval's default number of bootstrap draws for the standard errors of its own aggregations
BOOTSTRAP_ITERS = 100000
#: sample-log keys copied from the measured log; the task's own keys are recomputed
LOG_KEYS = ("doc_id", "target", "filtered_resps", "resps", "token_counts", "doc_hash", "input", "input_media")
#: model_args that edit or record generation (analysis): not defined for a measured answer
GENERATE_ONLY_ARGS = ("knockout_layers", "knockout_score", "key_stats", "vcd_alpha", "blind")


def add_arguments(parser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH", help="lmms-eval --output_path folders or *_samples_<task>.jsonl files (runs made with --log_samples)")
    parser.add_argument("--model", required=True, help="the textdom adapter to measure with, e.g. qwen2_5_vl_textdom")
    parser.add_argument("--model_args", default="", help="its model_args, as for lmms-eval (pretrained=... must be the checkpoint that answered)")
    parser.add_argument("--tasks", default=None, help="comma-separated logged task names to measure (default: every log found)")
    parser.add_argument("--include_path", default=None, help="a folder of your own task YAMLs, as for lmms-eval (our tasks and lmms-eval's are always found)")
    parser.add_argument("--output_path", default=DEFAULT_OUTPUT, help=f"where the lmms-eval-shaped output goes (default ./{DEFAULT_OUTPUT})")
    parser.add_argument("--batch_size", type=int, default=1, help="samples per forward pass (left-padded prompts)")
    parser.add_argument("--limit", type=int, default=None, help="measure the first N samples (by doc_id) of each log")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: the rank's GPU if there is one)")
    parser.add_argument(
        "--forced", action="store_true",
        help="measure answers another checkpoint (or another prompt) produced: the text is re-tokenized for this model",
    )  # fmt: skip
    parser.add_argument("--bootstrap_iters", type=int, default=BOOTSTRAP_ITERS, help="lmms-eval's bootstrap draws for standard errors")


@dataclass
class Plan:
    """What to measure of one log, all checked before the model loads."""

    log: SampleLog
    rows: dict[int, dict]  # doc_id -> logged sample
    contexts: dict[int, str]
    route: str  # answer_tokens: logged_ids, retokenized or forced
    store: SampleStore
    done: dict[int, dict] = field(default_factory=dict)

    @property
    def doc_ids(self) -> list[int]:
        return sorted(self.rows)


def model_kwargs(args, adapter) -> dict[str, Any]:
    """The adapter's keyword arguments from --model_args and the flags, validated without loading anything."""
    from lmms_eval.utils import simple_parse_args_string

    from lmms_textdom.models.args import parse_model_args

    kwargs = simple_parse_args_string(args.model_args) if args.model_args else {}
    for name in ("batch_size", "device"):
        if name in kwargs:
            raise UsageError(f"pass {name} as --{name}, not inside --model_args")
    kwargs["batch_size"] = args.batch_size
    if args.device is not None:
        kwargs["device"] = args.device
    parsed = parse_model_args(adapter.model_args_spec(), dict(kwargs), adapter.MODEL_ID)
    if not parsed["textdom"]:
        raise UsageError("measure always measures: drop textdom=false from --model_args")
    for name in GENERATE_ONLY_ARGS:
        if parsed.get(name) and str(parsed[name]).strip().lower() != "none":
            raise UsageError(f"model_arg {name} works on generate runs only (it edits or records generation); drop it for measure")
    if parsed.get("device_map") == "auto" and int(os.environ.get("WORLD_SIZE", 1)) > 1:
        raise UsageError("device_map=auto spreads one model over all GPUs of one process; do not combine it with several processes")
    return kwargs


def check_answerer(log: SampleLog, pretrained: str, forced: bool) -> bool:
    """True if the log's answers came from ``pretrained``; else --forced is required."""
    if same_checkpoint(log.checkpoint, pretrained):
        return True
    if forced:
        return False
    made_by = f"checkpoint {log.checkpoint}" if log.checkpoint else "a checkpoint its model_args do not name"
    raise UsageError(
        f"{log.path} holds answers of {made_by} (model {log.model}, model_args {log.model_args!r}), but "
        f"--model_args pretrained={pretrained}. Measure with the checkpoint that answered, or pass --forced to measure "
        "another model's answers (re-tokenized; recorded as answer_tokens=forced)."
    )


def check_family_settings(log: SampleLog, adapter, kwargs: dict, forced: bool) -> None:
    """A log of our own adapter must be measured with the family settings that shaped its inputs
    (pruning, replication, frame sampling, ...): the answers were made for those inputs."""
    from lmms_eval.utils import simple_parse_args_string

    from lmms_textdom.models.args import parse_model_args

    if forced or log.model != adapter.MODEL_ID:
        return
    spec = adapter.FAMILY_ARGS
    names = {a.name for a in spec}
    logged = log.model_args if isinstance(log.model_args, dict) else simple_parse_args_string(str(log.model_args or ""))
    try:
        theirs = parse_model_args(spec, {k: v for k, v in logged.items() if k in names}, adapter.MODEL_ID)
    except UsageError:
        return  # an older adapter's settings: nothing to compare them with
    ours = parse_model_args(spec, {k: v for k, v in kwargs.items() if k in names}, adapter.MODEL_ID)
    differ = sorted(k for k in names if theirs[k] != ours[k])
    if differ:
        pairs = ", ".join(f"{k}={theirs[k]} (here {ours[k]})" for k in differ)
        raise UsageError(
            f"{log.path} was generated with {pairs}: measure with the same model_args (the answers were made for "
            "those inputs), or pass --forced to measure them under these."
        )


def plan_log(log: SampleLog, tasks, pretrained: str, args) -> Plan:
    same = check_answerer(log, pretrained, args.forced)
    rows: dict[int, dict] = {}
    for row in log.samples:
        if row["doc_id"] in rows:
            raise UsageError(f"{log.path} holds doc_id {row['doc_id']} twice (repeats or several filters); measure reads one answer per document")
        rows[row["doc_id"]] = row
    kept = sorted(rows)[: args.limit] if args.limit else sorted(rows)
    rows = {d: rows[d] for d in kept}
    tasks.check_doc_ids(log, kept)
    contexts = {d: tasks.context(log, d) for d in kept}
    differ = [d for d in kept if isinstance(rows[d].get("input"), str) and rows[d]["input"] != contexts[d]]
    if differ and not args.forced:
        d = differ[0]
        raise UsageError(
            f"{log.path}: the logged prompt of doc_id {d} is not the one '{tasks.name(log)}' gives {args.model} "
            f"({len(differ)} of {len(kept)} differ).\n  logged: {rows[d]['input'][:300]!r}\n  here:   {contexts[d][:300]!r}\n"
            "The answers were made for another prompt (another task version or model-specific prompt); pass --forced to measure them anyway."
        )
    if not same or differ:
        route = FORCED
    elif all(logged_ids(rows[d]) for d in kept):
        route = LOGGED_IDS
    else:
        route = RETOKENIZED
    if route != LOGGED_IDS and not tasks.keeps_text(log):
        raise UsageError(
            f"{log.path}: '{tasks.name(log)}' filters the model's text (filter '{tasks.filter_key(log)}') and the log keeps "
            "only the filtered response, not the answer's tokens. Generate the log with our adapter and textdom=false, which "
            "logs the token ids."
        )
    key = progress_key(log.path, args.model, args.model_args, args.forced, args.limit, route)
    store = SampleStore(Path(args.output_path), tasks.name(log), key, rank=0)
    return Plan(log, rows, contexts, route, store)


def distributed(device: str | None) -> tuple[int, int]:
    import torch
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", 1))
    rank = int(os.environ.get("RANK", 0))
    if world > 1 and not dist.is_initialized():
        gpu = torch.cuda.is_available() and not (device or "").startswith("cpu")
        if gpu:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group("nccl" if gpu else "gloo")
    return rank, world


def answer_of(plan: Plan, row: dict, model, eos_ids: list[int]) -> Answer:
    if plan.route == LOGGED_IDS:
        return from_log(row)
    return retokenize(logged_text(row), model.tokenizer, eos_ids, plan.log.max_new_tokens())


def scored_response(row: dict) -> Any:
    """The response ``process_results`` saw in the logged run (a textdom payload beside it left out)."""
    from lmms_textdom.integration.hook import is_payload

    value = row.get("filtered_resps")
    if isinstance(value, list) and len(value) == 2 and is_payload(value[1]):
        value = value[0]
    return value


def measure_plan(plan: Plan, tasks, model, mine: list[int], batch_size: int, eos_ids: list[int], bar) -> list[dict]:
    run = {"measured_from": plan.log.measured_from, "answer_tokens": plan.route}
    # longest first: similar lengths share a batch, and memory peaks at the start
    order = sorted(mine, key=lambda d: -(len(plan.contexts[d]) + len(logged_text(plan.rows[d]))))
    records = []
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        requests = [model._request(tasks.instance(plan.log, d, plan.contexts[d])) for d in chunk]
        answers = [answer_of(plan, plan.rows[d], model, eos_ids) for d in chunk]
        payloads = model.measure_batch(requests, [a.ids for a in answers], run, [a.record() for a in answers])
        done = []
        for d, payload in zip(chunk, payloads):
            row = plan.rows[d]
            sample = {k: row[k] for k in LOG_KEYS if k in row}
            sample.update(tasks.score(plan.log, d, scored_response(row), payload))
            done.append(sample)
        plan.store.add(done)
        records += done
        bar.update(len(chunk))
    return records


def run_measure(args) -> list[Path]:
    """Measure the logs of ``args``; returns the results files written (rank 0) or [] (other ranks)."""
    from lmms_textdom.integration.registry import model_class

    if args.batch_size < 1:
        raise UsageError(f"--batch_size must be >= 1, got {args.batch_size}")
    if args.limit is not None and args.limit < 1:
        raise UsageError(f"--limit must be >= 1, got {args.limit}")
    logs = find_sample_logs(args.paths)
    if args.tasks:
        from lmms_textdom.integration.derived_tasks import SUFFIX

        wanted = {t.strip() for t in args.tasks.split(",") if t.strip()}
        found = sorted({log.task for log in logs})
        logs = [log for log in logs if log.task in wanted or log.task + SUFFIX in wanted]
        if not logs:
            raise UsageError(f"--tasks {args.tasks}: none of the logs is of those tasks; the logs hold {', '.join(found)}")
    try:
        adapter = model_class(args.model)
    except KeyError as exc:
        raise UsageError(f"--model {args.model}: {exc.args[0]}") from None
    kwargs = model_kwargs(args, adapter)
    pretrained = str(kwargs.get("pretrained", adapter.DEFAULT_PRETRAINED))
    for log in logs:  # before the tasks load: the cheapest checks first
        check_answerer(log, pretrained, args.forced)
        check_family_settings(log, adapter, kwargs, args.forced)

    from lmms_textdom.integration.measure_tasks import MeasureTasks

    tasks = MeasureTasks(args.model, [log.task for log in logs], args.output_path, args.include_path)
    plans = [plan_log(log, tasks, pretrained, args) for log in logs]
    rank, world = distributed(kwargs.get("device"))
    for plan in plans:
        plan.store.rank = rank
    done = [plan.store.done() if rank == 0 else None for plan in plans]
    if world > 1:
        import torch.distributed as dist

        dist.broadcast_object_list(done, src=0)
    for plan, found in zip(plans, done):
        plan.done = {d: r for d, r in found.items() if d in plan.rows}
    mine = [[d for d in plan.doc_ids if d not in plan.done][rank::world] for plan in plans]

    from tqdm import tqdm

    model = adapter(**kwargs)
    model.task_dict = tasks.model_documents()
    eos = model.model.generation_config.eos_token_id
    eos_ids = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
    if not eos_ids and model.tokenizer.eos_token_id is not None:
        eos_ids = [model.tokenizer.eos_token_id]
    resumed = sum(len(plan.done) for plan in plans)
    quiet = rank != 0 or not sys.stderr.isatty()
    with tqdm(total=sum(map(len, mine)), desc="lmms-textdom measure", unit="sample", disable=quiet) as bar:
        if resumed and rank == 0:
            bar.write(f"lmms-textdom measure: {resumed} samples already measured in {args.output_path}, going on with the rest")
        new = [measure_plan(plan, tasks, model, ids, args.batch_size, eos_ids, bar) for plan, ids in zip(plans, mine)]
    for plan in plans:
        plan.store.close()
    if world > 1:
        import torch.distributed as dist

        gathered = [None] * world if rank == 0 else None
        dist.gather_object(new, gathered, dst=0)
        # every rank leaves the group before it exits: a rank that exits holding gloo's threads can abort
        # ("terminate called without an active exception"), and torchrun then fails the whole run
        dist.destroy_process_group()
        if rank != 0:
            return []
        new = [[r for part in gathered for r in part[i]] for i in range(len(plans))]
    from lmms_textdom.measure.output import write_outputs

    written = write_outputs(plans, new, tasks, model, args)
    for plan in plans:
        plan.store.remove()
    return written


def run_from_args(args) -> None:
    for path in run_measure(args):
        print(f"lmms-textdom measure: wrote {path}")
