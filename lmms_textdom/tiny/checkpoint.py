"""Saving a tiny model as a checkpoint folder that ``from_pretrained`` loads."""

from __future__ import annotations

from pathlib import Path


def save_checkpoint(path: str | Path, model, processor) -> Path:
    path = Path(path)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path
