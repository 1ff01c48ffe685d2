#!/usr/bin/env bash
# Drift check for maintainers (`make upgrade-check`; not part of CI): a throw-away environment with
# the newest versions that requirements/cpu.in's bounds allow (torch stays the local CPU 2.13.0,
# lmms-eval the newest below 0.8), then the test suite in it. Prints which packages moved against
# the lock and what broke; the report is kept in .textdom-cache/upgrade-check.txt.
set -uo pipefail
cd "$(dirname "$0")/.."
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
venv="$work/venv"
report=".textdom-cache/upgrade-check.txt"
mkdir -p .textdom-cache
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)

python3 -m venv "$venv"
"${pip[@]}" install -U pip
"${pip[@]}" install torch==2.13.0
"${pip[@]}" install --no-deps -U "lmms-eval>=0.7.3,<0.8"
echo "torch==2.13.0" > "$work/torch.txt"
"${pip[@]}" install -U -c "$work/torch.txt" -r requirements/cpu.in
"${pip[@]}" install --no-deps --no-build-isolation -e .

{
    echo "# upgrade-check $(date -u +%Y-%m-%dT%H:%MZ): newest versions within the bounds, against the lock"
    "$venv/bin/python" - <<'PY'
import importlib.metadata as md
import sys
sys.path.insert(0, "scripts")
from lockfile import normalize, read_pins

installed = {normalize(d.metadata["Name"]): d.version for d in md.distributions()}
moved = [(n, v, installed.get(n)) for n, (v, _) in sorted(read_pins().items()) if installed.get(n) not in (v, None)]
new = sorted(set(installed) - set(read_pins()) - {"lmms-textdom"})
print("moved:", "none" if not moved else "")
for name, locked, now in moved:
    print(f"  {name}: {locked} -> {now}")
if new:
    print("new packages:", ", ".join(f"{n} {installed[n]}" for n in new))
PY
} | tee "$report"

# its own --basetemp: a pytest run elsewhere on the machine would otherwise prune its temp folders
eval "extra=(${PYTEST_ARGS:-})"  # e.g. PYTEST_ARGS='-m "not slow"'
"$venv/bin/python" -m pytest -q -rf -p no:cacheprovider --basetemp "$work/pytest" "${extra[@]}" > "$work/pytest.txt" 2>&1
status=$?
{
    echo "suite: exit $status"
    grep -E "^(FAILED|ERROR) |passed|failed" "$work/pytest.txt" | tail -n 40
} | tee -a "$report"
echo "upgrade-check: report in $report"
exit $status
