"""Packaging rules: layer boundaries of the core and the installed entry points."""

from __future__ import annotations

import subprocess
import sys

import pkgutil

import lmms_textdom.core
import lmms_textdom.editing
import lmms_textdom.media

# Every module of the core layers, found from the tree so a new module is covered without edits here.
CORE = [
    info.name
    for package in (lmms_textdom.core, lmms_textdom.editing, lmms_textdom.media)
    for info in pkgutil.iter_modules(package.__path__, package.__name__ + ".")
]


def imported_after(module: str) -> set[str]:
    code = f"import sys, {module}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_metric_core_needs_numpy_only():
    loaded = imported_after("lmms_textdom.core.metrics")
    assert "numpy" in loaded
    assert not {"torch", "transformers", "lmms_eval"} & loaded


def test_core_never_imports_lmms_eval():
    for module in CORE:
        assert "lmms_eval" not in imported_after(module), module


def test_models_are_registered_through_entry_points():
    code = (
        "from lmms_eval.models import MODEL_REGISTRY_V2, get_model;"
        "from lmms_textdom.integration.registry import MODELS;"
        "print([get_model(m).__name__ for m in MODELS])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "LlavaHfTextdom" in out


def test_tasks_folder_is_installed_with_the_yaml_files():
    from lmms_textdom.integration.registry import tasks_dir

    names = {p.name for p in tasks_dir().glob("*/*.yaml")}
    assert {"mmmu_pro_textdom.yaml", "mmmu_pro_standard_textdom.yaml", "mmmu_pro_vision_textdom.yaml", "mmbench_video_textdom.yaml"} <= names


def table_values(stdout: str, row: str) -> dict[str, float]:
    """Metric -> value from the rows of lmms-eval's printed markdown table for ``row``."""
    values = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) > 5 and cells[0] == row:
            values[cells[3]] = float(cells[5])
    return values


def test_demo_prints_the_results_table(tmp_path):
    import os

    env = dict(os.environ, LMMS_TEXTDOM_CACHE=str(tmp_path))
    done = subprocess.run([sys.executable, "-m", "lmms_textdom", "demo"], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "RANDOM weights" in done.stdout
    values = table_values(done.stdout, "mmmu_pro_textdom")
    assert {"mmmu_acc", "mdi_early", "mdi_middle", "mdi_late", "aei_early", "aei_middle", "aei_late"} <= set(values)
    assert values["textdom"] == 14 and all(v > 0 for k, v in values.items() if k.startswith(("mdi", "aei")))
    assert "pretrained=llava-hf/llava-1.5-7b-hf" in done.stdout
