"""Where a task's data comes from: the hub, or a local snapshot under ``$LMMS_TEXTDOM_DATA``.

Layout of the local copy: ``$LMMS_TEXTDOM_DATA/<org>/<name>/`` is a snapshot of the hub dataset
repository ``<org>/<name>``, as ``huggingface-cli download <org>/<name> --repo-type dataset
--local-dir $LMMS_TEXTDOM_DATA/<org>/<name>`` writes it (README.md with its ``configs:`` header and
the data files). Hub-less clusters copy that folder over; the tests and the demo fabricate one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

from lmms_textdom.core.errors import UsageError, fail_loudly

ENV = "LMMS_TEXTDOM_DATA"


def layout_help(repo_id: str) -> str:
    return (
        f"Set {ENV} to a folder holding {repo_id}/, a snapshot of the hub dataset repository, e.g.\n"
        f"  huggingface-cli download {repo_id} --repo-type dataset --local-dir ${ENV}/{repo_id}\n"
        "on a machine with hub access, then copy the folder over."
    )


def local_snapshot(repo_id: str) -> Path | None:
    """The local snapshot folder for ``repo_id`` if ``$LMMS_TEXTDOM_DATA`` is set (it must exist then)."""
    root = os.environ.get(ENV)
    if not root:
        return None
    folder = Path(root).expanduser() / repo_id
    if not folder.is_dir():
        raise UsageError(f"{ENV}={root} is set, but {folder} does not exist.\n{layout_help(repo_id)}")
    return folder


def snapshot_cache_dir(folder: Path) -> Path:
    """A datasets cache folder of its own for one state of a local snapshot.

    ``datasets`` names the prepared copy of a local folder after the folder's name and its
    ``configs:`` header only, so two snapshots of one repository (a fabricated one and the real
    one, or two of different sizes) would share it and the second would be served the first's rows.
    """
    import hashlib

    import datasets

    files = sorted(p for p in folder.rglob("*") if p.is_file())
    state = [str(folder.resolve())] + [f"{p.relative_to(folder)}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files]
    digest = hashlib.sha256("\n".join(state).encode()).hexdigest()[:16]
    return Path(datasets.config.HF_DATASETS_CACHE) / "lmms_textdom_snapshots" / digest


def hub_dataset(repo_id: str, config: str | None, split: str):
    """One split of a dataset loadable with ``datasets.load_dataset``, from the snapshot or the hub."""
    import datasets

    folder = local_snapshot(repo_id)
    source = str(folder) if folder else repo_id
    cache = {"cache_dir": str(snapshot_cache_dir(folder))} if folder else {}
    try:
        return datasets.load_dataset(source, name=config, split=split, **cache)
    except Exception as exc:  # the datasets library raises many types for "not there"
        where = f"the local snapshot {folder}" if folder else f"the hub ({repo_id})"
        raise UsageError(f"could not load config {config!r}, split {split!r} from {where}: {exc}\n{layout_help(repo_id)}") from exc


def snapshot_files(repo_id: str, patterns: list[str]) -> Path:
    """The folder holding ``repo_id``'s files that match ``patterns`` (globs), from the snapshot or the hub.

    For datasets that ``datasets.load_dataset`` cannot read (raw files such as TSVs and pickles).
    Only the matching files are downloaded; the hub's folder is huggingface_hub's cache snapshot.
    """
    folder = local_snapshot(repo_id)
    if folder is not None:
        missing = [p for p in patterns if not any(folder.glob(p))]
        if missing:
            raise UsageError(f"the local snapshot {folder} has no {', '.join(missing)}.\n{layout_help(repo_id)}")
        return folder
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, repo_type="dataset", allow_patterns=patterns))
    except Exception as exc:  # offline, unreachable, not found: all mean "use a local copy"
        raise UsageError(f"could not fetch {', '.join(patterns)} of {repo_id} from the hub: {exc}\n{layout_help(repo_id)}") from exc


def loud_process_docs(load: Callable[[], Any], name: str) -> Callable:
    """A ``process_docs`` function that replaces the task's one-row stub with ``load()``.

    lmms-eval can only load a task's data from a fixed ``dataset_path``; our YAMLs load a stub and
    this swaps in the data found at run time, failing loudly when it is not there.
    """

    def process_docs(stub):
        try:
            return load()
        except UsageError as exc:
            fail_loudly(exc)

    process_docs.__name__ = name
    return process_docs


def docs_loader(repo_id: str, config: str | None, split: str = "test") -> Callable:
    """A ``process_docs`` function loading one split of ``repo_id`` (see ``hub_dataset``)."""
    return loud_process_docs(lambda: hub_dataset(repo_id, config, split), f"load_{repo_id.replace('/', '_')}")
