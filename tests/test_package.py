"""Packaging rules: layer boundaries of the core and the installed entry points."""

from __future__ import annotations

import subprocess
import sys

CORE = ["lmms_textdom.metrics", "lmms_textdom.stats", "lmms_textdom.modality", "lmms_textdom.probe"]


def imported_after(module: str) -> set[str]:
    code = f"import sys, {module}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_metric_core_needs_numpy_only():
    loaded = imported_after("lmms_textdom.metrics")
    assert "numpy" in loaded
    assert not {"torch", "transformers", "lmms_eval"} & loaded


def test_core_never_imports_lmms_eval():
    for module in CORE:
        assert "lmms_eval" not in imported_after(module), module
