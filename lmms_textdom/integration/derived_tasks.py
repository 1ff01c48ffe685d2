"""``<name>_textdom``: MDI/AEI on any registered lmms-eval generate task, group or tag.

No YAML is written and no task code is copied. When a ``*_textdom`` name is asked for and no
task of that exact name exists, the name is added to lmms-eval's ``TaskManager`` index, pointing at
the original's entry. Its configuration is the original's, read by lmms-eval as usual, renamed;
a group's members are renamed the same way, and its ``aggregate_metric_list`` gains the textdom
metrics (sample-weighted mean of the defined values). Once lmms-eval has built a derived task
from that configuration (same data, prompts, generation kwargs, filters and scoring), its
``process_results`` is wrapped and the textdom metrics get their aggregations. The task's own
scoring then sees exactly the filtered responses the original would see (``responses.py``).

Only ``generate_until`` tasks can be measured: MDI/AEI come from the attention of generated
tokens, and a loglikelihood or multiple-choice task generates none.
"""

from __future__ import annotations

import bisect
import functools

from lmms_textdom.core.errors import UsageError, fail_loudly
from lmms_textdom.integration.hook import (
    DETAIL, FAILED, METRIC_NAMES, group_mean, group_sum, mean_of_defined, samples_failed, samples_measured, textdom_metrics,
)
from lmms_textdom.integration.responses import split_filtered

SUFFIX = "_textdom"
MEASURABLE = ("generate_until",)
#: TaskManager attribute: derived task name -> the name it derives from
_DERIVED = "_textdom_derived"

#: as in our own task YAMLs
TASK_METRICS = [
    *({"metric": m, "aggregation": mean_of_defined, "higher_is_better": False} for m in METRIC_NAMES),
    {"metric": DETAIL, "aggregation": samples_measured, "higher_is_better": True},
    {"metric": FAILED, "aggregation": samples_failed, "higher_is_better": False},
]
GROUP_METRICS = [
    *({"metric": m, "aggregation": group_mean, "weight_by_size": True} for m in METRIC_NAMES),
    {"metric": DETAIL, "aggregation": group_sum, "weight_by_size": False},
    {"metric": FAILED, "aggregation": group_sum, "weight_by_size": False},
]


def original_name(name: str) -> str | None:
    """``mme`` for ``mme_textdom``; None for a name without the suffix or with a wildcard."""
    if not name.endswith(SUFFIX) or len(name) == len(SUFFIX) or any(c in name for c in "*?["):
        return None
    return name[: -len(SUFFIX)]


def derived_names(manager) -> dict[str, str]:
    return manager.__dict__.setdefault(_DERIVED, {})


def _check_measurable(name: str, output_type: str | None) -> None:
    output_type = output_type or "generate_until"
    if output_type not in MEASURABLE:
        raise UsageError(
            f"'{name}' cannot be measured: it is a {output_type} task, which scores given answers "
            f"and generates no tokens, while MDI/AEI come from the attention of generated tokens. "
            f"Run it under its plain name, or pick a generate_until task."
        )


def _add_to_index(manager, name: str, entry: dict) -> None:
    manager._task_index[name] = entry
    lists = {"task": "_all_subtasks", "python_task": "_all_subtasks", "group": "_all_groups", "tag": "_all_tags"}
    for attr in ("_all_tasks", lists.get(entry["type"])):
        if attr and name not in getattr(manager, attr):
            bisect.insort(getattr(manager, attr), name)


def register(manager, name: str) -> None:
    """Index ``name`` as derived from its original if it is ``<registered name>_textdom`` and unknown."""
    if name in manager.task_index:
        return  # a real task of that name (ours, or the user's) wins
    base = original_name(name)
    if base is None:
        return  # not ours: lmms-eval reports unknown names itself
    if base not in manager.task_index:
        raise UsageError(
            f"--tasks {name}: no lmms-eval task, group or tag is named '{base}', so there is nothing to "
            f"derive '{name}' from. `lmms-eval --tasks list` shows the names (add --include_path for "
            f"your own task folders)."
        )
    entry = dict(manager.task_index[base])
    if entry["type"] == "task":
        from lmms_eval import utils

        config = utils.load_yaml_config(entry["yaml_path"], mode="simple")
        _check_measurable(base, config.get("output_type"))
    if isinstance(entry.get("task"), list):  # a tag (or an indexed group) lists its members
        entry["task"] = [_derive_member(manager, member) for member in entry["task"]]
    derived_names(manager)[name] = base
    _add_to_index(manager, name, entry)


def _derive_member(manager, member):
    """A group member (name or inline config) as its derived counterpart."""
    if isinstance(member, str):
        register(manager, member + SUFFIX)
        return member + SUFFIX
    member = dict(member)
    if isinstance(member.get("task"), list):  # an inline group
        return derive_config(manager, member, member["group"] + SUFFIX)
    name = member["task"] + SUFFIX
    if member["task"] in manager.task_index:
        register(manager, name)
    else:  # an inline task config
        _check_measurable(member["task"], member.get("output_type"))
        derived_names(manager)[name] = member["task"]
    return {**member, "task": name}


def _aliased(config: dict, key: str) -> None:
    if config.get(key):
        config[key] = f"{config[key]}{SUFFIX}"


def derive_config(manager, config: dict, name: str) -> dict:
    """The original's full configuration renamed to ``name``; a group's members and aggregates derived."""
    config = dict(config)
    if isinstance(config.get("task"), list):
        config["group"] = name
        config["task"] = [_derive_member(manager, member) for member in config["task"]]
        own = config.get("aggregate_metric_list") or []
        config["aggregate_metric_list"] = [*([own] if isinstance(own, dict) else own), *GROUP_METRICS]
        _aliased(config, "group_alias")
        return config
    _check_measurable(config.get("task", name), config.get("output_type"))
    config["task"] = name
    for key in ("tag", "group", "group_alias"):  # the original's tags are not the derived task's
        config.pop(key, None)
    _aliased(config, "task_alias")
    return config


def augment(task) -> None:
    """Give a task built from a derived configuration the textdom metrics (idempotent)."""
    if getattr(task, "_textdom_augmented", False):
        return
    _check_measurable(task.config.task or "an inline group member", getattr(task, "OUTPUT_TYPE", None))
    scored = task.process_results

    @functools.wraps(scored)
    def process_results(doc, results, *args, **kwargs):
        texts, payload = split_filtered(results)
        out = dict(scored(doc, texts, *args, **kwargs))
        out.update(textdom_metrics(payload))
        return out

    task.process_results = process_results
    for entry in TASK_METRICS:
        task._aggregation_list[entry["metric"]] = entry["aggregation"]
        task._higher_is_better[entry["metric"]] = entry["higher_is_better"]
    task.config.metric_list = [*(task.config.metric_list or []), *TASK_METRICS]  # recorded in results.json
    task._textdom_augmented = True


def install() -> None:
    """Teach lmms-eval's TaskManager the ``*_textdom`` names (once per process)."""
    from lmms_eval.api.task import Task
    from lmms_eval.tasks import TaskManager

    if getattr(TaskManager, "_derives_textdom_tasks", False):
        return
    match_tasks, load_task_or_group = TaskManager.match_tasks, TaskManager.load_task_or_group
    get_config, load_one = TaskManager._get_config, TaskManager._load_individual_task_or_group

    def register_all(manager, names) -> None:
        try:
            for name in [names] if isinstance(names, str) else names or []:
                if isinstance(name, str):
                    register(manager, name)
        except UsageError as exc:
            fail_loudly(exc)

    def patched_match_tasks(self, task_list):
        register_all(self, task_list)
        return match_tasks(self, task_list)

    def patched_load_task_or_group(self, task_list=None, *args, **kwargs):
        register_all(self, task_list)
        return load_task_or_group(self, task_list, *args, **kwargs)

    def patched_get_config(self, name):
        base = derived_names(self).get(name)
        if base is None or name not in self.task_index or self.task_index[name].get("yaml_path", -1) == -1:
            return get_config(self, name)
        try:
            return derive_config(self, get_config(self, base), name)
        except UsageError as exc:
            fail_loudly(exc)

    def patched_load_one(self, *args, **kwargs):
        loaded = load_one(self, *args, **kwargs)
        derived = derived_names(self)
        for key, obj in loaded.items():  # the key names the task even where lmms-eval leaves config.task unset
            if isinstance(obj, Task) and key in derived:
                try:
                    augment(obj)
                except UsageError as exc:
                    fail_loudly(exc)
        return loaded

    TaskManager.match_tasks = patched_match_tasks
    TaskManager.load_task_or_group = patched_load_task_or_group
    TaskManager._get_config = patched_get_config
    TaskManager._load_individual_task_or_group = patched_load_one
    TaskManager._derives_textdom_tasks = True
