#!/usr/bin/env bash
# Create the project's virtual environment in $1 (default .venv) from the lock files.
# CPU machines: exactly requirements/cpu.lock (hash-checked, local CPU torch), lmms-eval with
# --no-deps (requirements/lmms-eval.lock), then this package in editable mode.
# NVIDIA GPU machines: CUDA torch and the full lmms-eval, every other package at the locked version.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:-.venv}"
python="${PYTHON:-python3}"

# --clear: a rebuilt environment holds exactly the lock, nothing left from an older one
"$python" -m venv --clear "$venv"
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "setup: NVIDIA GPU found, installing CUDA torch and the full lmms-eval (other packages as locked)"
    constraints="$venv/lock-constraints.txt"
    "$python" scripts/lockfile.py constraints > "$constraints"
    "${pip[@]}" install -c "$constraints" pip setuptools wheel
    "${pip[@]}" install -c "$constraints" -e ".[dev]"
else
    echo "setup: no GPU, installing requirements/cpu.lock (CPU torch 2.13.0) and lmms-eval without torchvision"
    "${pip[@]}" install --require-hashes --no-deps -r requirements/cpu.lock
    "${pip[@]}" install --require-hashes --no-deps -r requirements/lmms-eval.lock
    "${pip[@]}" install --no-deps --no-build-isolation -e .
fi
"$venv/bin/python" -c "import lmms_textdom, lmms_eval, transformers, torch; print('setup: torch', torch.__version__, '| transformers', transformers.__version__)"
