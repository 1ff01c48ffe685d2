"""The environment is the lock, and the lock is within pyproject.toml's bounds."""

from __future__ import annotations

import importlib.metadata as metadata
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from lockfile import LOCKS, MACHINE_SPECIFIC, normalize, read_pins  # noqa: E402

ON_GPU_SETUP = __import__("torch").version.cuda is not None  # the GPU path keeps its own torch and CUDA packages


def applies(marker: str | None) -> bool:
    return marker is None or Requirement(f"x ; {marker}").marker.evaluate(default_environment())


def locked() -> dict[str, str]:
    return {name: version for name, (version, marker) in read_pins().items() if applies(marker)}


def installed() -> dict[str, str]:
    return {normalize(d.metadata["Name"]): d.version for d in metadata.distributions()}


def test_every_locked_package_is_installed_at_its_locked_version():
    have = installed()
    wrong = {
        name: (version, have.get(name))
        for name, version in locked().items()
        if have.get(name) != version and not (ON_GPU_SETUP and MACHINE_SPECIFIC.match(name))
    }
    assert not wrong, f"environment differs from the lock (locked, installed): {wrong}; rebuild with `make clean test`"


def test_nothing_is_installed_beyond_the_lock():
    if ON_GPU_SETUP:
        pytest.skip("the GPU set-up installs the full lmms-eval, whose extra requirements are not in the CPU lock")
    extra = set(installed()) - set(locked()) - {"lmms-textdom"}
    assert not extra, f"installed but not locked: {sorted(extra)}; add them to requirements/cpu.in and run `make lock`"


def declared_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        lines += extra
    return [Requirement(line) for line in lines]


def test_pyproject_bounds_admit_the_locked_versions():
    pins = locked()
    outside = {}
    for requirement in declared_requirements():
        if requirement.marker is not None and not requirement.marker.evaluate(default_environment()):
            continue
        version = pins.get(normalize(requirement.name))
        assert version is not None, f"{requirement.name} is declared in pyproject.toml but not locked"
        if not requirement.specifier.contains(Version(version), prereleases=True):
            outside[requirement.name] = (str(requirement.specifier), version)
    assert not outside, f"pyproject.toml bounds exclude the tested versions (bound, locked): {outside}"


def test_the_gpu_constraints_pin_everything_but_torch_and_cuda():
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "lockfile.py"), "constraints"], capture_output=True, text=True, check=True).stdout
    names = {normalize(line.split("==")[0]) for line in out.splitlines()}
    assert "torch" not in names and not any(n.startswith(("nvidia-", "cuda-")) for n in names)
    assert {"transformers", "filelock", "lmms-eval", "numpy"} <= names
    assert len(names) == len([n for n in read_pins() if not MACHINE_SPECIFIC.match(n)])


def test_every_lock_line_carries_a_hash():
    for path in LOCKS:
        text = path.read_text()
        pins = [line for line in text.splitlines() if "==" in line and not line.lstrip().startswith("#")]
        assert pins and text.count("--hash=sha256:") >= len(pins), path


@pytest.mark.slow
def test_a_wheel_in_a_fresh_environment_lists_and_runs_our_tasks(tmp_path):
    """Build the wheel from the tree, install it beside the lock into a new venv, use it as a user would."""
    source = tmp_path / "src"
    shutil.copytree(
        ROOT, source,
        ignore=shutil.ignore_patterns(".venv", ".git", ".textdom-cache", "__pycache__", "build", "dist", "*.egg-info", ".pytest_cache", ".hypothesis"),
    )  # fmt: skip
    venv = tmp_path / "venv"
    python = venv / "bin" / "python"
    pip = [str(python), "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([*pip, "install", "--require-hashes", "--no-deps", "-r", str(LOCKS[0])], check=True)
    subprocess.run([*pip, "install", "--require-hashes", "--no-deps", "-r", str(LOCKS[1])], check=True)
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"), str(source)], check=True)
    (wheel,) = (tmp_path / "dist").glob("lmms_textdom-*.whl")
    subprocess.run([*pip, "install", "--no-deps", str(wheel)], check=True)

    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", LMMS_TEXTDOM_CACHE=str(tmp_path / "cache"))
    elsewhere = {"cwd": tmp_path, "env": env, "capture_output": True, "text": True, "timeout": 900}  # not the source tree
    listed = subprocess.run([str(venv / "bin" / "lmms-eval"), "--tasks", "list"], **elsewhere)
    assert listed.returncode == 0, listed.stderr[-2000:]
    assert "mmmu_pro_textdom" in listed.stdout + listed.stderr
    where = subprocess.run([str(python), "-c", "import lmms_textdom; print(lmms_textdom.__file__)"], **elsewhere)
    assert str(venv) in where.stdout, where.stdout  # the installed wheel, not the checkout
    demo = subprocess.run([str(python), "-m", "lmms_textdom", "demo"], **elsewhere)
    assert demo.returncode == 0, demo.stderr[-3000:]
    assert "mdi_late" in demo.stdout and "mmmu_pro_textdom" in demo.stdout
