#!/usr/bin/env bash
# Create the project's virtual environment in $1 (default .venv) and install everything.
# On a machine with an NVIDIA GPU: a normal install (CUDA torch, full lmms-eval).
# Elsewhere: the local CPU torch wheel, lmms-eval without its torchvision requirement.
set -euo pipefail
venv="${1:-.venv}"
python="${PYTHON:-python3}"

"$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)
"${pip[@]}" install -U pip

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "setup: NVIDIA GPU found, installing CUDA torch and the full lmms-eval"
    "${pip[@]}" install -e ".[dev]"
else
    echo "setup: no GPU, installing CPU torch 2.13.0 and lmms-eval without torchvision"
    "${pip[@]}" install -c requirements/cpu-constraints.txt torch==2.13.0
    "${pip[@]}" install --no-deps "lmms-eval==0.7.3"
    "${pip[@]}" install -c requirements/cpu-constraints.txt -r requirements/cpu.txt
    "${pip[@]}" install --no-deps -e .
    # torchvision's PyPI wheels link CUDA torch; present beside CPU torch they break every import.
    "${pip[@]}" uninstall -y torchvision >/dev/null 2>&1 || true
fi
"$venv/bin/python" -c "import lmms_textdom, lmms_eval, transformers, torch; print('setup: torch', torch.__version__, '| transformers', transformers.__version__)"
