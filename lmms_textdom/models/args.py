"""Declared, validated ``--model_args``: unknown or invalid values fail before anything loads.

Not argparse or pydantic: lmms-eval hands the model a dict of values it already typed its own way
(``-1`` is a float, ``None`` a string), and the error must list every argument with its default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from lmms_textdom.core.errors import UsageError


@dataclass(frozen=True)
class Arg:
    name: str
    default: Any
    help: str
    kind: type = str
    choices: tuple = ()
    check: Callable[[Any], bool] | None = None
    requirement: str = ""  # what ``check`` demands, for the error message

    def describe(self) -> str:
        allowed = f" (one of {', '.join(map(str, self.choices))})" if self.choices else ""
        return f"{self.name}={self.default}{allowed}: {self.help}"


def _convert(arg: Arg, value: Any) -> Any:
    """lmms-eval hands over bools, ints, floats and strings (``None`` arrives as the string 'None')."""
    if value is None or (isinstance(value, str) and value == "None" and arg.default is None):
        return None
    if arg.kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0"):
            return value.lower() in ("true", "1")
        if isinstance(value, (int, float)) and value in (0, 1):
            return bool(value)
        raise ValueError("expected true or false")
    if arg.kind is int:
        number = float(value) if not isinstance(value, bool) else None
        if number is None or not number.is_integer():
            raise ValueError("expected an integer")
        return int(number)
    if arg.kind is float:
        if isinstance(value, bool):
            raise ValueError("expected a number")
        return float(value)
    return str(value)


def parse_model_args(spec: Sequence[Arg], given: Mapping[str, Any], model_id: str) -> dict[str, Any]:
    known = {a.name: a for a in spec}
    listing = "\n".join(f"  {a.describe()}" for a in spec)
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise UsageError(f"{model_id}: unknown model_args {', '.join(unknown)}. Valid model_args:\n{listing}")
    values = {}
    for arg in spec:
        raw = given.get(arg.name, arg.default)
        try:
            value = _convert(arg, raw)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"{model_id}: model_arg {arg.name}={raw!r} is invalid: {exc}.\n  {arg.describe()}") from None
        if value is not None and arg.choices and value not in arg.choices:
            raise UsageError(f"{model_id}: model_arg {arg.name}={raw!r} is invalid; accepted: {', '.join(map(str, arg.choices))}")
        if value is not None and arg.check is not None and not arg.check(value):
            raise UsageError(f"{model_id}: model_arg {arg.name}={raw!r} is invalid; it must be {arg.requirement}")
        values[arg.name] = value
    return values


# Shared by every family that can edit its non-text tokens.
PRUNE_RATIO = Arg(
    "prune_ratio", 0.0, "fraction of visual tokens pruned before the language model, 0 = off",
    kind=float, check=lambda r: 0 <= r < 1, requirement="a number with 0 <= r < 1 (0 = off)",
)  # fmt: skip
NONTEXT_REPEAT = Arg(
    "nontext_repeat", 1, "each non-text span replicated k times before the language model (dilution test)",
    kind=int, check=lambda k: k >= 1, requirement="an integer k >= 1 (1 = off)",
)  # fmt: skip

# Shared by every family that samples video frames (lmms_textdom.media.video).
MAX_FRAMES = Arg(
    "max_frames", 8, "frames sampled per video (uniform, endpoints excluded); with fps: the most frames taken",
    kind=int, check=lambda n: n >= 1, requirement="an integer >= 1",
)  # fmt: skip
FPS = Arg(
    "fps", None, "sample one frame every 1/fps seconds instead (at most max_frames, else max_frames uniform)",
    kind=float, check=lambda f: f > 0, requirement="a number > 0",
)  # fmt: skip
VIDEO_ORDER = Arg(
    "video_order", "text_first",
    "where the text goes in a sample with a video: text_first = question then video (VLMEvalKit's "
    "video-model message), video_first = visuals then question (lmms-eval's layout)",
    choices=("text_first", "video_first"),
)  # fmt: skip


def frame_sampling_arg(native: str, meaning: str) -> Arg:
    """``frame_sampling`` for a video family: its own sampler by default, or VLMEvalKit's frames-as-images rule."""
    return Arg("frame_sampling", native, f"which frames a video gives: {native} = {meaning}; vlmevalkit_images = VLMEvalKit's frames-as-images rule", choices=(native, "vlmevalkit_images"))


def passes(check: Callable[[Any], Any], value: Any) -> bool:
    """Whether ``check(value)`` accepts the value (raises no ValueError): an ``Arg.check`` from a parser."""
    try:
        check(value)
    except ValueError:
        return False
    return True


def _layer_syntax_ok(text: str) -> bool:
    from lmms_textdom.analysis.layers import check_layer_syntax

    return passes(check_layer_syntax, text)


# Shared by every family (lmms_textdom.analysis): layer knock-outs and the key-space sample.
KNOCKOUT_LAYERS = Arg(
    "knockout_layers", None, "layers where the rows after the non-text span cannot attend to non-text positions",
    check=_layer_syntax_ok, requirement="layer indices and ranges joined by '+' (e.g. 0-3+16+28-31), 'all' or 'none'",
)  # fmt: skip
KNOCKOUT_SCORE = Arg(
    "knockout_score", False, "with knockout_layers: also answer without knock-out and score that answer's tokens with it",
    kind=bool,
)  # fmt: skip
ATTENTION_MAP_MODES = ("false", "true", "steps")
ATTENTION_MAPS = Arg(
    "attention_maps", "false", "record per-position attention maps of the non-text positions per layer group "
    "(textdom.attention_maps); steps = also for the first and last quarter of the answer",
    check=lambda v: str(v).lower() in ATTENTION_MAP_MODES, requirement="true, false or steps",
)  # fmt: skip
KEY_STATS = Arg("key_stats", False, "record a bounded sample of each class's key vectors per layer (key-space divergence)", kind=bool)
KEY_STATS_POSITIONS = Arg(
    "key_stats_positions", 64, "key_stats: prompt positions sampled per class, sample and layer",
    kind=int, check=lambda n: n >= 4, requirement="an integer >= 4 (two halves of at least 2)",
)  # fmt: skip
