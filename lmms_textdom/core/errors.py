"""Errors a user can fix, and making them impossible to miss under the lmms-eval CLI.

lmms-eval's CLI catches every ``Exception`` from an evaluation, prints it among its logs and exits
with status 0, so a wrong model_arg would look like a finished run. Under that CLI our failures
print a framed message to stderr and leave with ``SystemExit`` (which lmms-eval does not catch, and
which torchrun turns into stopping every rank). Called from Python, they raise normally.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import NoReturn


class UsageError(ValueError):
    """Bad input that the user can fix; the message says how."""


def under_lmms_eval_cli() -> bool:
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name in ("lmms_eval", "lmms_eval.__main__"):
        return True
    return os.path.basename(sys.argv[0] if sys.argv else "") == "lmms-eval"


def framed(text: str) -> str:
    """``text`` between two rules, so that it stands out among lmms-eval's logs."""
    bar = "=" * 78
    return f"\n{bar}\n{text}\n{bar}\n"


def fail_loudly(exc: BaseException) -> NoReturn:
    """Re-raise ``exc``; under the lmms-eval CLI print it framed and exit non-zero instead."""
    if not under_lmms_eval_cli():
        raise exc
    kind = "configuration error" if isinstance(exc, UsageError) else f"failure ({type(exc).__name__})"
    if not isinstance(exc, UsageError):
        traceback.print_exception(exc, file=sys.stderr)
    sys.stderr.write(framed(f"lmms-textdom {kind}:\n{exc}"))
    sys.stderr.flush()
    raise SystemExit(2) from exc
