"""Layer specifications such as ``0-3+16+28-31`` (the ``knockout_layers`` model_arg); no torch."""

from __future__ import annotations

import re

#: What a ``knockout_layers`` value looks like, for error messages.
LAYER_SYNTAX = "layer indices and ranges joined by '+' (e.g. 0-3+16+28-31), 'all', or 'none'"
_PART = re.compile(r"^(\d+)(?:-(\d+))?$")
_OFF = ("", "none", "null", "false")


def _parts(text: str) -> list[str]:
    # '+' inside one model_arg; ',' ';' and spaces too when quoted or bracketed on the command line
    return [p for p in re.split(r"[+,;\s]+", text.strip().strip("[]'\"")) if p]


def check_layer_syntax(text: str | None) -> None:
    """Raise ValueError naming the bad part when ``text`` is not a layer specification."""
    if text is None or str(text).strip().lower() in (*_OFF, "all"):
        return
    parts = _parts(str(text))
    if not parts:
        raise ValueError(f"no layers in {text!r}; expected {LAYER_SYNTAX}")
    for part in parts:
        match = _PART.match(part)
        if not match:
            raise ValueError(f"{part!r} is not a layer or a range; expected {LAYER_SYNTAX}")
        if match.group(2) is not None and int(match.group(2)) < int(match.group(1)):
            raise ValueError(f"range {part!r} runs backwards; write it low-high")


def parse_layers(text: str | None, num_layers: int) -> frozenset[int]:
    """The layer indices named by ``text`` in a language model of ``num_layers`` layers (empty = none)."""
    check_layer_syntax(text)
    if text is None or str(text).strip().lower() in _OFF:
        return frozenset()
    if str(text).strip().lower() == "all":
        return frozenset(range(num_layers))
    layers = set()
    for part in _parts(str(text)):
        low, high = _PART.match(part).groups()
        low, high = int(low), int(high if high is not None else low)
        if high >= num_layers:
            raise ValueError(f"{part!r} lies outside the language model, whose layers are 0-{num_layers - 1}")
        layers.update(range(low, high + 1))
    return frozenset(layers)


def format_layers(layers) -> str | None:
    """Canonical text of a layer set: sorted runs joined by '+', e.g. '0-3+16'; None when empty."""
    ordered = sorted(layers)
    if not ordered:
        return None
    runs, start = [], ordered[0]
    for prev, cur in zip(ordered, ordered[1:] + [None]):
        if cur != prev + 1:
            runs.append(f"{start}" if start == prev else f"{start}-{prev}")
            start = cur
    return "+".join(runs)
