"""Where a checkpoint's files are: a local folder or a hub id, with one clear error when neither.

Every family reads its checkpoint through these, so `pretrained=/no/such/folder` stops before any
weights load with a line that names the value, instead of a hub validation traceback.
"""

from __future__ import annotations

import os
from pathlib import Path

from lmms_textdom.core.errors import UsageError


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def unreachable(pretrained: str, reason: BaseException | str) -> UsageError:
    """The error for a ``pretrained`` value that is neither a local folder nor a reachable hub id."""
    offline = " (HF_HUB_OFFLINE=1 is set, so the hub is not asked)" if hub_offline() else ""
    return UsageError(
        f"pretrained={pretrained} is neither a local checkpoint folder nor a hub id that can be reached{offline}: "
        f"{str(reason).splitlines()[0] if str(reason) else type(reason).__name__}"
    )


def checkpoint_file(pretrained: str, filename: str, revision: str = "main", required: bool = True) -> Path | None:
    """Local path of ``filename`` of the checkpoint ``pretrained`` (folder, or hub id via the cache).

    A missing optional file gives None; a missing checkpoint, or a missing required file, a UsageError.
    """
    folder = Path(pretrained).expanduser()
    if folder.is_dir():
        path = folder / filename
        if path.is_file():
            return path
        if required:
            raise UsageError(f"pretrained={pretrained} is a folder but has no {filename}: point it at the checkpoint folder")
        return None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    try:
        return Path(hf_hub_download(pretrained, filename, revision=revision))
    except LocalEntryNotFoundError as exc:  # offline, or no connection, and not in the cache
        raise unreachable(pretrained, exc) from None
    except EntryNotFoundError as exc:
        if required:
            raise UsageError(f"checkpoint {pretrained} has no {filename}") from exc
        return None
    except (OSError, ValueError) as exc:  # not a repo id, no such repo, offline and not cached
        raise unreachable(pretrained, exc) from None


def check_reachable(pretrained: str, revision: str = "main") -> None:
    """Stop early, with one line, when ``pretrained`` names no checkpoint that can be read."""
    checkpoint_file(pretrained, "config.json", revision)
