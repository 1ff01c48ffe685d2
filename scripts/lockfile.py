"""Read the lock files (standard library only): used by the set-up script and the tests.

`python scripts/lockfile.py constraints` prints the pins without hashes, leaving out torch and the
CUDA packages: the constraints a GPU machine installs with, so it gets the tested versions of
everything else.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCKS = (ROOT / "requirements" / "cpu.lock", ROOT / "requirements" / "lmms-eval.lock")
# Packages whose build depends on the machine: a GPU machine takes its own.
MACHINE_SPECIFIC = re.compile(r"^(torch|triton|nvidia-.*|cuda-.*)$")
_PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^\s;\\]+)\s*(?:;\s*([^\\]+?))?\s*\\?$")


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(paths=LOCKS) -> dict[str, tuple[str, str | None]]:
    """{normalized name: (version, environment marker or None)} of every pin in the lock files."""
    pins = {}
    for path in paths:
        for line in Path(path).read_text().splitlines():
            match = _PIN.match(line.strip())
            if match:
                pins[normalize(match.group(1))] = (match.group(2), match.group(3))
    return pins


def constraints() -> str:
    lines = []
    for name, (version, marker) in sorted(read_pins().items()):
        if not MACHINE_SPECIFIC.match(name):
            lines.append(f"{name}=={version}" + (f" ; {marker}" if marker else ""))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if sys.argv[1:] != ["constraints"]:
        sys.exit("usage: python scripts/lockfile.py constraints")
    sys.stdout.write(constraints())
