"""The embedded-default registry (``lmms_textdom.tiny.defaults``), the layering around it, and the
``lmms-textdom`` commands' answer to a model name they do not know."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import lmms_textdom
from lmms_textdom.integration.registry import MODELS
from lmms_textdom.tiny import defaults

PACKAGE = Path(lmms_textdom.__file__).parent


def test_every_registered_model_has_an_embedded_default():
    assert sorted(defaults.DEFAULTS) == sorted(MODELS)


def imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return found


@pytest.mark.parametrize("layer", ["models", "integration"])
def test_models_and_integration_never_import_tiny(layer):
    upward = {
        str(path.relative_to(PACKAGE)): sorted(m for m in imported_modules(path) if m.startswith("lmms_textdom.tiny"))
        for path in (PACKAGE / layer).rglob("*.py")
    }
    assert not {k: v for k, v in upward.items() if v}


def test_a_default_is_built_once_per_version(tmp_path, monkeypatch):
    calls = []

    def write(folder: Path) -> str:
        calls.append(folder)
        (folder / "weights").write_text("w")
        return "graph_tower={folder}/tower"

    target = tmp_path / "checkpoint"
    assert defaults._built(target, write) == "graph_tower={folder}/tower"
    assert defaults._built(target, write) == "graph_tower={folder}/tower" and len(calls) == 1
    assert (target / "weights").is_file() and not list(tmp_path.glob("*.partial-*"))
    monkeypatch.setattr(defaults, "VERSION", "next")
    defaults._built(target, write)
    assert len(calls) == 2 and (target / ".textdom-version").read_text() == "next"


def test_an_unknown_default_lists_the_registered_ones(tmp_path):
    from lmms_textdom.core.errors import UsageError

    with pytest.raises(UsageError, match="no embedded default for model 'foo_textdom'; registered: llava_hf_textdom, "):
        defaults.embedded_setup("foo_textdom", tmp_path)


@pytest.fixture(scope="module")
def unknown_model_runs():
    """Every subcommand that takes --model, given one that does not exist, run at once through the CLI."""
    cli = Path(sys.executable).with_name("lmms-textdom")
    started = {
        command: subprocess.Popen([str(cli), command, "--model", "foo_textdom"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for command in ("demo", "table2", "knockout")
    }
    return {command: (p.wait(timeout=300), *p.communicate()) for command, p in started.items()}


@pytest.mark.parametrize("command", ["demo", "table2", "knockout"])
def test_an_unknown_model_is_a_one_line_error_naming_the_registered_ones(command, unknown_model_runs):
    status, out, err = unknown_model_runs[command]
    assert status == 2 and out == ""
    assert err == f"lmms-textdom {command}: error: unknown model 'foo_textdom'; registered: {', '.join(MODELS)}\n"
