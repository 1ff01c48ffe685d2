"""lmms-eval plugin registration: model ids (entry-point group ``lmms_eval.models``) and task discovery.

lmms-eval 0.7.3 has no entry points for tasks, and its ``LMMS_EVAL_PLUGINS`` task route builds the
task index before adding the plugin's folder (so ``--tasks <plugin task>`` fails without
``--include_path``). When lmms-eval loads our model manifests, which it does on every CLI run
before it indexes tasks, we add our installed task folder to ``TaskManager``'s search path once.
Passing ``--include_path`` to the same folder as well is harmless. The same moment teaches the
TaskManager the derived ``<task>_textdom`` names (``derived_tasks``), routes the textdom
payload around every task's filters (``responses``) and lets the response cache keep each batch
as it finishes (``resume``).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from lmms_textdom.integration import derived_tasks, responses, resume

#: model id -> adapter class path
MODELS = {
    "llava_hf_textdom": "lmms_textdom.models.llava.adapter.LlavaHfTextdom",
    "llava_next_textdom": "lmms_textdom.models.llava_next.adapter.LlavaNextTextdom",
    "qwen2_audio_textdom": "lmms_textdom.models.qwen2_audio.adapter.Qwen2AudioTextdom",
    "qwen2_5_vl_textdom": "lmms_textdom.models.qwen2_5_vl.adapter.Qwen25VLTextdom",
    "kimi_vl_textdom": "lmms_textdom.models.kimi_vl.adapter.KimiVLTextdom",
    "chatts_textdom": "lmms_textdom.models.chatts.adapter.ChatTSTextdom",
    "videollama3_textdom": "lmms_textdom.models.videollama3.adapter.VideoLlama3Textdom",
    "graphgpt_textdom": "lmms_textdom.models.graphgpt.adapter.GraphGPTTextdom",
}


def check_model(model_id: str) -> None:
    """UsageError listing the registered ids unless ``model_id`` is one of them."""
    from lmms_textdom.core.errors import UsageError

    if model_id not in MODELS:
        raise UsageError(f"unknown model {model_id!r}; registered: {', '.join(MODELS)}")


def model_class(model_id: str):
    """The adapter class registered as ``model_id`` (imports lmms-eval)."""
    import importlib

    check_model(model_id)
    module, _, name = MODELS[model_id].rpartition(".")
    return getattr(importlib.import_module(module), name)


def tasks_dir() -> Path:
    """The installed task folder (the repository's ``tasks/``, installed as ``lmms_textdom.tasks``)."""
    spec = importlib.util.find_spec("lmms_textdom.tasks")
    return Path(next(iter(spec.submodule_search_locations))).resolve()


def add_task_folder() -> None:
    from lmms_eval.tasks import TaskManager

    original = TaskManager.initialize_tasks
    if getattr(original, "_adds_textdom_tasks", False):
        return
    folder = str(tasks_dir())

    def initialize_tasks(self, include_path=None, include_defaults=True):
        paths = [] if include_path is None else [include_path] if isinstance(include_path, str) else list(include_path)
        if all(Path(p).resolve() != Path(folder) for p in paths):
            paths.append(folder)
        return original(self, include_path=paths, include_defaults=include_defaults)

    initialize_tasks._adds_textdom_tasks = True
    TaskManager.initialize_tasks = initialize_tasks


def manifests():
    """Entry point payload: called by lmms-eval's model registry."""
    from lmms_eval.models.registry_v2 import ModelManifest

    add_task_folder()
    derived_tasks.install()
    responses.install()
    resume.install()
    return [ModelManifest(model_id=model_id, simple_class_path=path) for model_id, path in MODELS.items()]
