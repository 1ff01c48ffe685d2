"""Measured samples kept on disk as they are done, so an interrupted ``measure`` goes on where it stopped.

Each rank appends one JSON line per finished sample to its own file under
``<output>/.measure_progress/<key>/``; ``key`` names the log, the model and every setting that
changes the numbers, so only a repeat of the same command picks the lines up again. A line cut
off by the interruption is ignored (that sample is measured again). The folder goes once the
results are written.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

PROGRESS_DIR = ".measure_progress"


def progress_key(log_path: Path, *settings: Any) -> str:
    stat = log_path.stat()
    text = json.dumps([str(log_path.resolve()), stat.st_size, stat.st_mtime_ns, *settings], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class SampleStore:
    """The finished samples of one log's measure (all ranks), keyed by doc_id."""

    def __init__(self, output: Path, name: str, key: str, rank: int):
        self.folder = Path(output) / PROGRESS_DIR / f"{name}_{key}"
        self.rank = rank
        self._file = None

    def done(self) -> dict[int, dict]:
        """Samples finished by earlier runs of the same command (every rank's file)."""
        found: dict[int, dict] = {}
        for path in sorted(self.folder.glob("rank*.jsonl")):
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                except ValueError:
                    continue  # the line an interruption cut off
                if isinstance(record, dict) and isinstance(record.get("doc_id"), int):
                    found[record["doc_id"]] = record
        return found

    def add(self, records: list[dict]) -> None:
        if self._file is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._file = (self.folder / f"rank{self.rank}.jsonl").open("a", encoding="utf-8")
        for record in records:
            self._file.write(json.dumps(record, default=str) + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def remove(self) -> None:
        self.close()
        shutil.rmtree(self.folder, ignore_errors=True)
        parent = self.folder.parent
        if parent.is_dir() and not any(parent.iterdir()):
            parent.rmdir()
