"""Saving a tiny model as a checkpoint folder that the adapters load through ``from_pretrained``."""

from __future__ import annotations

from pathlib import Path
from typing import Callable


def save_built(path: str | Path, build: Callable, **kwargs) -> Path:
    """``build(**kwargs)`` -> (model, processor), both saved under ``path``."""
    path = Path(path)
    model, processor = build(**kwargs)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path
