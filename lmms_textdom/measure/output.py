"""The lmms-eval-shaped output of ``lmms-textdom measure``: one results file per measured run.

``<output_path>/<model>/<date>_results.json`` and ``<date>_samples_<task>.jsonl`` beside it, as
lmms-eval names them (``<model>`` from ``pretrained=`` in the model_args), so ``lmms-textdom
report`` and other readers of lmms-eval outputs take them as they are. Logs of one source run
become one results file; the per-task entries are lmms-eval's own aggregation of the per-sample
metrics (the task's, and MDI/AEI through the metric hook), the samples keep the logged fields and
get the task's keys (``textdom`` record included) from the measuring ``process_results``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lmms_textdom.core.errors import UsageError
from lmms_textdom.measure.command import LOG_KEYS, Plan


def output_folder(output_path: str, model_args: str) -> Path:
    from lmms_eval.loggers.evaluation_tracker import GeneralConfigTracker
    from lmms_eval.utils import sanitize_model_name

    name = GeneralConfigTracker._get_model_name(model_args or "")
    return Path(output_path) / sanitize_model_name(name) if name else Path(output_path)


def complete_records(plan: Plan, new: list[dict]) -> list[dict]:
    records = {**plan.done, **{r["doc_id"]: r for r in new}}
    missing = [d for d in plan.doc_ids if d not in records]
    if missing:
        raise UsageError(f"{plan.log.path}: {len(missing)} samples were not measured (first doc_id {missing[0]}); run the same command again to finish")
    return [records[d] for d in plan.doc_ids]


def write_outputs(plans: list[Plan], new: list[list[dict]], tasks, model, args) -> list[Path]:
    from lmms_eval.utils import get_datetime_str, handle_non_serializable

    folder = output_folder(args.output_path, args.model_args)
    folder.mkdir(parents=True, exist_ok=True)
    by_run: dict[Path, list[int]] = {}
    for i, plan in enumerate(plans):
        by_run.setdefault(plan.log.results_path, []).append(i)
    stamp = get_datetime_str()
    written = []
    for n, indices in enumerate(by_run.values()):
        date = stamp if n == 0 else f"{stamp}_{n}"
        results = _results_skeleton(args, date)
        for i in indices:
            plan, name = plans[i], tasks.name(plans[i].log)
            records = complete_records(plan, new[i])
            with (folder / f"{date}_samples_{name}.jsonl").open("w", encoding="utf-8") as out:
                for record in records:
                    out.write(json.dumps(record, default=handle_non_serializable, ensure_ascii=False) + "\n")
            metrics = [{k: v for k, v in r.items() if k not in LOG_KEYS} for r in records]
            info = tasks.task_config(plan.log)
            results["results"][name] = tasks.aggregate(plan.log, metrics, args.bootstrap_iters)
            results["group_subtasks"][name] = []
            results["configs"][name] = info["config"]
            results["versions"][name] = info["version"]
            results["n-shot"][name] = info["config"].get("num_fewshot") or 0
            results["higher_is_better"][name] = info["higher_is_better"]
            results["n-samples"][name] = {"original": info["documents"], "effective": len(records)}
            results["config"]["measured_from"][name] = {**plan.log.measured_from, "answer_tokens": plan.route}
        path = folder / f"{date}_results.json"
        path.write_text(json.dumps(results, indent=2, default=handle_non_serializable, ensure_ascii=False), encoding="utf-8")
        written.append(path)
    return written


def _results_skeleton(args, date: str) -> dict[str, Any]:
    from lmms_eval.evaluator import get_lmms_eval_version_string

    return {
        "results": {}, "group_subtasks": {}, "configs": {}, "versions": {}, "n-shot": {}, "higher_is_better": {}, "n-samples": {},
        "config": {
            "model": args.model, "model_args": args.model_args, "batch_size": args.batch_size, "device": args.device,
            "limit": args.limit, "bootstrap_iters": args.bootstrap_iters, "gen_kwargs": None,
            "route": "lmms-textdom measure", "forced": args.forced, "measured_from": {},
        },
        "date": date,
        "lmms_eval_version": get_lmms_eval_version_string(),
    }  # fmt: skip
