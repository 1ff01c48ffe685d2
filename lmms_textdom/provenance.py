"""Which code made a run: this plugin's version and commit, and the versions of lmms-eval, transformers, torch.

lmms-eval's results.json records the model_args, generation kwargs and date, but not these: its
``lmms_eval_version`` and ``git_hash`` describe the git checkout the command ran in, whatever that
is. So every textdom sample records them (``textdom.provenance`` in the sample log), and the report
shows them per run. Read from the installed distributions' metadata: nothing is imported.
"""

from __future__ import annotations

import functools
import importlib.metadata as metadata
import subprocess
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
#: provenance keys, in the order the report shows them
LIBRARIES = {"lmms_eval": "lmms-eval", "transformers": "transformers", "torch": "torch"}


def version_of(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def plugin_version() -> str:
    from lmms_textdom import __version__

    return version_of("lmms-textdom") or __version__


@functools.lru_cache(maxsize=1)
def plugin_commit() -> str | None:
    """The commit of the checkout this package runs from (12 hex digits, ``-dirty`` with local changes); None for a wheel."""
    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(["git", "-C", str(PACKAGE_DIR), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    top = git("rev-parse", "--show-toplevel")
    if top is None or Path(top).resolve() / PACKAGE_DIR.name != PACKAGE_DIR:  # not our own checkout
        return None
    commit = git("rev-parse", "--short=12", "HEAD")
    changed = git("status", "--porcelain", "--untracked-files=no")
    return None if commit is None else commit + ("-dirty" if changed else "")


@functools.lru_cache(maxsize=1)
def provenance() -> dict[str, str | None]:
    """``{"lmms_textdom": ..., "lmms_textdom_commit": ..., "lmms_eval": ..., "transformers": ..., "torch": ...}``."""
    found = {"lmms_textdom": plugin_version(), "lmms_textdom_commit": plugin_commit()}
    found.update({key: version_of(name) for key, name in LIBRARIES.items()})
    return found


def version_text() -> str:
    """What ``lmms-textdom --version`` prints."""
    found = provenance()
    commit = f" (commit {found['lmms_textdom_commit']})" if found["lmms_textdom_commit"] else ""
    libraries = ", ".join(f"{name} {found[key] or 'not installed'}" for key, name in LIBRARIES.items())
    return f"lmms-textdom {found['lmms_textdom']}{commit}\n{libraries}"
