#!/usr/bin/env bash
# Regenerate the lock files from requirements/cpu.in (`make lock`), then run `make test`.
#   requirements/cpu.lock        every package of the CPU environment, exact versions and hashes
#   requirements/lmms-eval.lock  lmms-eval itself, installed with --no-deps (its torchvision
#                                requirement cannot import beside CPU torch)
# LOCK_UPGRADE=0 make lock keeps every existing pin and only resolves what requirements/cpu.in added.
set -euo pipefail
cd "$(dirname "$0")/.."
lmms_eval_version="0.7.3"
tools="$(mktemp -d)"
trap 'rm -rf "$tools"' EXIT
python3 -m venv "$tools/venv"
"$tools/venv/bin/python" -m pip install -q --disable-pip-version-check "pip-tools==7.6.2"
upgrade=(--upgrade)
[[ "${LOCK_UPGRADE:-1}" == "0" ]] && upgrade=()
CUSTOM_COMPILE_COMMAND="make lock" "$tools/venv/bin/pip-compile" --quiet --generate-hashes --allow-unsafe --strip-extras \
    --no-emit-index-url --no-emit-find-links "${upgrade[@]}" \
    -o requirements/cpu.lock requirements/cpu.in
"$tools/venv/bin/python" -m pip download -q --disable-pip-version-check --no-deps \
    "lmms-eval==$lmms_eval_version" -d "$tools/wheel"
hash="$("$tools/venv/bin/python" -m pip hash "$tools"/wheel/*.whl | tail -n 1)"
printf '# lmms-eval itself, installed with --no-deps beside requirements/cpu.lock (make lock)\nlmms-eval==%s \\\n    %s\n' \
    "$lmms_eval_version" "$hash" > requirements/lmms-eval.lock
echo "lock: requirements/cpu.lock and requirements/lmms-eval.lock written; now run: make test"
