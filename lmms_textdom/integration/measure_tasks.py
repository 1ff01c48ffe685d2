"""The lmms-eval side of ``lmms-textdom measure``: a logged task rebuilt as our model would run it.

The log names its task. The measuring task is that task when it reports the textdom metrics (ours,
or a ``*_textdom`` twin the log already came from), else its ``<task>_textdom`` twin
(``derived_tasks``): same data, prompts, filters and scoring, plus the metric hook. lmms-eval's
``TaskManager`` builds it for our model's name (so ``lmms_eval_specific_kwargs`` pick the same
prompt variant as a generate run of our model), each logged ``doc_id`` is looked up in its
evaluation split, the context is built as lmms-eval builds it for a request, and the request goes
to the family's ``prepare`` exactly as in a generate run. Scoring calls the task's
``process_results`` with the logged (filtered) response and the measured payload, in the shape a
generate run hands it over, and aggregation is lmms-eval's own ``TaskOutput``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Iterable

from lmms_textdom.core.errors import UsageError
from lmms_textdom.integration import derived_tasks, registry
from lmms_textdom.integration.derived_tasks import SUFFIX
from lmms_textdom.integration.responses import wants_payload
from lmms_textdom.integration.sample_logs import SampleLog


class MeasureTasks:
    """Tasks for the logs' task names, built once by one ``TaskManager`` for ``model_id``."""

    def __init__(self, model_id: str, log_tasks: Iterable[str], output_path: str, include_path: str | None = None):
        from lmms_eval.tasks import TaskManager

        derived_tasks.install()
        self.model_id = model_id
        self.output_path = output_path
        names = sorted(set(log_tasks))
        folders = [str(registry.tasks_dir())]
        if include_path:
            if not Path(include_path).is_dir():
                raise UsageError(f"--include_path {include_path} is not a folder")
            folders.append(str(include_path))
        # our own (and the user's) task folders alone index in no time; stock names need lmms-eval's ~330 folders
        manager = TaskManager("WARNING", include_path=folders, include_defaults=False, model_name=model_id)
        if any(derived_tasks.original_name(name) not in manager.task_index and name not in manager.task_index for name in names):
            manager = TaskManager("WARNING", include_path=folders, include_defaults=True, model_name=model_id)
        self.manager = manager
        self.tasks: dict[str, Any] = {}  # log task name -> measuring task object
        self.names: dict[str, str] = {}  # log task name -> measuring task name
        for name in names:
            self.names[name], self.tasks[name] = self._build(name)

    def _build(self, log_task: str) -> tuple[str, Any]:
        from lmms_eval.tasks import get_task_dict

        # a log of a *_textdom task (ours, or a twin) is measured by that task; any other by its twin
        name = log_task if log_task.endswith(SUFFIX) else log_task + SUFFIX
        base = log_task if log_task.endswith(SUFFIX) and log_task in self.manager.task_index else derived_tasks.original_name(name)
        if base not in self.manager.task_index:
            raise UsageError(
                f"the log's task '{log_task}' is not installed here: lmms-eval has no task '{base}' (a task of your own "
                "needs its folder: lmms-eval --include_path, or LMMS_EVAL_PLUGINS)"
            )
        self._check_generates(base)
        derived_tasks.register(self.manager, name)
        try:
            task = get_task_dict([name], self.manager)[name]
        except UsageError:
            raise
        except Exception as exc:  # lmms-eval raises many kinds for a task it cannot load
            raise UsageError(f"could not build task '{name}' for the log of '{log_task}': {type(exc).__name__}: {exc}") from exc
        if isinstance(task, tuple):
            task = task[1]
        if not wants_payload(task):
            raise UsageError(f"task '{name}' does not report the textdom metrics; measure needs a generate_until task")
        filters = getattr(task, "_filters", [])
        if len(filters) != 1:
            raise UsageError(f"task '{name}' has {len(filters)} filter pipelines; measure reads logs of tasks with one")
        task.args = argparse.Namespace(output_path=self.output_path)  # aggregators that write files read it
        return name, task

    def _check_generates(self, name: str) -> None:
        from lmms_eval import utils

        entry = self.manager.task_index[name]
        if entry.get("type") != "task" or entry.get("yaml_path", -1) == -1:
            return
        output_type = utils.load_yaml_config(entry["yaml_path"], mode="simple").get("output_type") or "generate_until"
        if output_type not in derived_tasks.MEASURABLE:
            raise UsageError(
                f"the log of '{name}' comes from a {output_type} task, which scores given answers by their loglikelihood: "
                "no tokens were generated, while MDI/AEI come from the attention of generated tokens. measure reads "
                "logs of generate_until tasks."
            )

    # ----- per log ------------------------------------------------------------------------------

    def task(self, log: SampleLog):
        return self.tasks[log.task]

    def name(self, log: SampleLog) -> str:
        return self.names[log.task]

    def docs(self, log: SampleLog):
        task = self.task(log)
        return task.eval_docs

    def split(self, log: SampleLog) -> str:
        task = self.task(log)
        return task.config.test_split if task.has_test_docs() else task.config.validation_split

    def check_doc_ids(self, log: SampleLog, doc_ids: Iterable[int]) -> None:
        size = len(self.docs(log))
        missing = sorted(d for d in doc_ids if not 0 <= d < size)
        if missing:
            raise UsageError(
                f"{log.path}: doc_id {missing[0]} is not in '{self.name(log)}' here (its {self.split(log)} split has "
                f"{size} documents{'' if len(missing) == 1 else f'; {len(missing)} doc_ids are missing'}): the data "
                "differs from the run's (another dataset version, or a different LMMS_TEXTDOM_DATA)"
            )

    def keeps_text(self, log: SampleLog) -> bool:
        """Whether the task's filter hands the model's text through (so a logged response is the answer's text)."""
        from lmms_eval.filters.selection import TakeFirstFilter

        (pipeline,) = self.task(log)._filters
        return all(isinstance(f, TakeFirstFilter) for f in pipeline.filters)

    def filter_key(self, log: SampleLog) -> str:
        return self.task(log)._filters[0].name

    def context(self, log: SampleLog, doc_id: int) -> str:
        """The request context lmms-eval builds for this document (what a generate run passes the model)."""
        task = self.task(log)
        doc = task.eval_docs_no_media[doc_id]
        shots = task.get_config("num_fewshot") or 0
        return task.fewshot_context(doc, shots)

    def instance(self, log: SampleLog, doc_id: int, context: str):
        task = self.task(log)
        meta = {"task": self.name(log), "doc_id": doc_id, "repeats": 1, "split": self.split(log)}
        made = task.construct_requests(doc_id=doc_id, ctx=context, metadata=meta)
        return made[0] if isinstance(made, list) else made

    def model_documents(self) -> dict[str, Any]:
        """``lmms.task_dict``: full documents (media included) per measuring task and split."""
        return {self.names[log_task]: task.dataset for log_task, task in self.tasks.items()}

    def score(self, log: SampleLog, doc_id: int, response: Any, payload: str) -> dict[str, Any]:
        """The task's ``process_results`` on the logged response and the measured payload."""
        task = self.task(log)
        doc = task.eval_docs_no_media[doc_id]
        return task.process_results(doc, [[response, payload]])

    def aggregate(self, log: SampleLog, metrics: list[dict[str, Any]], bootstrap_iters: int) -> dict[str, Any]:
        """lmms-eval's aggregation of the per-sample metrics: the task's results-table entry."""
        from lmms_eval.evaluator_utils import TaskOutput

        name, task = self.name(log), self.task(log)
        output = TaskOutput.from_taskdict(name, task)
        key = self.filter_key(log)
        for values in metrics:
            for metric, value in values.items():
                output.sample_metrics[(metric, key)].append(value)
        output.calculate_aggregate_metric(bootstrap_iters=bootstrap_iters)
        output.calculate_clt_aggregate_metric()
        return {"alias": name, **output.agg_metrics}

    def task_config(self, log: SampleLog) -> dict[str, Any]:
        task = self.task(log)
        return {
            "config": dict(task.dump_config()),
            "version": task.VERSION,
            "higher_is_better": task.higher_is_better(),
            "documents": len(self.docs(log)),
        }

