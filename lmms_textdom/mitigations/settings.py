"""The mitigation switches as one checked value, from model_args; no torch.

Neutral values switch a mitigation off entirely (``attn_boost=0``, ``attn_shift=1:1``,
``vcd_alpha=0``): nothing is installed, so the run is the plain run, token for token.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from lmms_textdom.analysis.layers import format_layers, parse_layers

PAI, SCALE = "pai", "scale"
BOOST_MODES = (PAI, SCALE)
#: VCD's forward-diffusion steps (``vcd_add_noise.py``): vcd_noise is a step 0 .. 999 of this schedule
DIFFUSION_STEPS = 1000
#: every model_arg of the switches (a sweep's baseline drops them)
SWITCH_ARGS = (
    "attn_boost", "attn_boost_mode", "attn_boost_layers", "attn_shift", "attn_shift_layers",
    "vcd_alpha", "vcd_beta", "vcd_noise", "vcd_seed", "blind",
)  # fmt: skip


def default_boost_layers(depth: int) -> frozenset[int]:
    """PAI's layers 2 .. 31 of LLaVA-1.5's 32: from layer 2 to the last (all layers below 3)."""
    return frozenset(range(min(2, depth - 1), depth))


def default_shift_layers(depth: int) -> frozenset[int]:
    """ClearSight's middle layers 9 .. 14 of 32 (8 < l < 15), scaled to ``depth``."""
    low = min(depth - 1, int(9 * depth / 32 + 0.5))
    high = max(low, min(depth - 1, int(14 * depth / 32 + 0.5)))
    return frozenset(range(low, high + 1))


def parse_shift(text: str) -> tuple[float, float]:
    """``ENH:SUP`` -> (enh, sup); ValueError naming the form."""
    parts = str(text).strip().split(":")
    if len(parts) != 2:
        raise ValueError(f"expected ENH:SUP, two numbers joined by ':' (e.g. 1.15:0.95), got {text!r}")
    try:
        enh, sup = (float(p) for p in parts)
    except ValueError:
        raise ValueError(f"expected ENH:SUP, two numbers joined by ':' (e.g. 1.15:0.95), got {text!r}") from None
    if not (math.isfinite(enh) and enh > 0):
        raise ValueError(f"ENH must be > 0 (it multiplies the non-text scores; 1 = unchanged), got {enh:g}")
    if not (math.isfinite(sup) and sup > 0):
        raise ValueError(f"SUP must be > 0 (it multiplies the system-prompt scores; 1 = unchanged), got {sup:g}")
    return enh, sup


@dataclass(frozen=True)
class Switches:
    boost: float = 0.0
    boost_mode: str = PAI
    boost_layers: frozenset[int] = frozenset()
    enhance: float = 1.0
    suppress: float = 1.0
    shift_layers: frozenset[int] = frozenset()
    vcd_alpha: float = 0.0
    vcd_beta: float = 0.1
    vcd_noise: int = 500
    vcd_seed: int = 0
    blind: bool = False

    @property
    def boosts(self) -> bool:
        return self.boost != 0 and bool(self.boost_layers)

    @property
    def shifts(self) -> bool:
        return (self.enhance, self.suppress) != (1.0, 1.0) and bool(self.shift_layers)

    @property
    def contrasts(self) -> bool:
        return self.vcd_alpha > 0

    @property
    def edits_attention(self) -> bool:
        return self.boosts or self.shifts

    @property
    def any(self) -> bool:
        return self.edits_attention or self.contrasts or self.blind

    def record(self) -> dict[str, Any]:
        """What a sample's settings say of the switches that ran (nothing for those that did not)."""
        out: dict[str, Any] = {}
        if self.boosts:
            out.update(attn_boost=self.boost, attn_boost_mode=self.boost_mode, attn_boost_layers=format_layers(self.boost_layers))
        if self.shifts:
            out.update(attn_shift=f"{self.enhance:g}:{self.suppress:g}", attn_shift_layers=format_layers(self.shift_layers))
        if self.contrasts:
            out.update(vcd_alpha=self.vcd_alpha, vcd_beta=self.vcd_beta, vcd_noise=self.vcd_noise, vcd_seed=self.vcd_seed)
        if self.blind:
            out["blind"] = True
        return out


def switches_from_args(args: Mapping[str, Any], depth: int | Callable[[], int]) -> Switches:
    """The switches of parsed model_args for a language model of ``depth`` layers (or a function giving
    it, asked only when an attention switch is on); ValueError on a bad value or combination, naming the fix."""
    depth_of = depth if callable(depth) else (lambda: depth)
    boost, mode = float(_get(args, "attn_boost", 0.0)), _get(args, "attn_boost_mode", PAI)
    if mode not in BOOST_MODES:
        raise ValueError(f"attn_boost_mode={mode!r}: accepted {', '.join(BOOST_MODES)}")
    if mode == PAI and boost < 0:
        raise ValueError(f"attn_boost={boost:g} with attn_boost_mode=pai: PAI's alpha must be >= 0 (s + alpha*|s|); use attn_boost_mode=scale with -1 < alpha < 0 to damp")
    if mode == SCALE and boost <= -1:
        raise ValueError(f"attn_boost={boost:g} with attn_boost_mode=scale: the weight factor 1 + alpha must be > 0, so alpha > -1")
    boost_layers = _layers(args, "attn_boost_layers", depth_of(), default_boost_layers) if boost != 0 else frozenset()
    enhance, suppress = parse_shift(_get(args, "attn_shift", "1:1"))
    shifting = (enhance, suppress) != (1.0, 1.0)
    shift_layers = _layers(args, "attn_shift_layers", depth_of(), default_shift_layers) if shifting else frozenset()
    alpha, beta = float(_get(args, "vcd_alpha", 0.0)), float(_get(args, "vcd_beta", 0.1))
    if alpha < 0:
        raise ValueError(f"vcd_alpha={alpha:g}: the contrast weight must be >= 0 (0 = off)")
    if not 0 <= beta <= 1:
        raise ValueError(f"vcd_beta={beta:g}: the plausibility cut keeps tokens with p >= beta * max p, so 0 <= beta <= 1")
    noise = int(_get(args, "vcd_noise", 500))
    if not 0 <= noise < DIFFUSION_STEPS:
        raise ValueError(f"vcd_noise={noise}: a step of VCD's {DIFFUSION_STEPS}-step diffusion schedule, 0 .. {DIFFUSION_STEPS - 1}")
    switches = Switches(
        boost, mode, boost_layers, enhance, suppress, shift_layers, alpha, beta, noise, int(_get(args, "vcd_seed", 0)),
        bool(_get(args, "blind", False)),
    )  # fmt: skip
    _check_combinations(switches, args)
    return switches


def _get(args: Mapping[str, Any], name: str, default):
    value = args.get(name)
    return default if value is None else value


def _layers(args: Mapping[str, Any], name: str, depth: int, default) -> frozenset[int]:
    text = args.get(name)
    if text is None or str(text).strip().lower() in ("", "default"):
        return default(depth)
    try:
        return parse_layers(text, depth)
    except ValueError as exc:
        raise ValueError(f"{name}={text!r} is invalid: {exc}") from None


def _check_combinations(s: Switches, args: Mapping[str, Any]) -> None:
    if s.blind:
        clash = [
            name for name, on in (
                ("prune_ratio", float(args.get("prune_ratio") or 0) > 0), ("nontext_repeat", int(args.get("nontext_repeat") or 1) > 1),
                ("attn_boost", s.boosts), ("attn_shift", s.shifts), ("vcd_alpha", s.contrasts),
                ("knockout_layers", str(args.get("knockout_layers") or "none").strip().lower() not in ("", "none", "null", "false")),
            ) if on
        ]  # fmt: skip
        if clash:
            raise ValueError(f"blind=true removes the non-text input, which {', '.join(clash)} act(s) on; run them without blind")
    if args.get("knockout_score") and (s.contrasts or s.edits_attention):
        raise ValueError("knockout_score compares with a second, plain generate, which the switches (attn_boost, attn_shift, vcd_alpha) would not match; drop one of them")


def switch_settings(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The switch entries of ``raw`` settings (a sample's record, or model_args text) typed as records
    hold them, neutral values left out: a plain run's and an ``attn_boost=0`` run's read the same."""
    out: dict[str, Any] = {}
    if float(raw.get("attn_boost") or 0) != 0:
        out["attn_boost"] = float(raw["attn_boost"])
        out["attn_boost_mode"] = raw.get("attn_boost_mode") or PAI
        if raw.get("attn_boost_layers") is not None:
            out["attn_boost_layers"] = _canonical_layers(raw["attn_boost_layers"])
    shift = raw.get("attn_shift")
    if shift is not None and parse_shift(shift) != (1.0, 1.0):
        enh, sup = parse_shift(shift)
        out["attn_shift"] = f"{enh:g}:{sup:g}"
        if raw.get("attn_shift_layers") is not None:
            out["attn_shift_layers"] = _canonical_layers(raw["attn_shift_layers"])
    if float(raw.get("vcd_alpha") or 0) > 0:
        out["vcd_alpha"] = float(raw["vcd_alpha"])
        out["vcd_beta"] = float(raw.get("vcd_beta", 0.1))
        out["vcd_noise"] = int(float(raw.get("vcd_noise", 500)))
        out["vcd_seed"] = int(float(raw.get("vcd_seed", 0)))
    if str(raw.get("blind", False)).lower() in ("true", "1"):
        out["blind"] = True
    return out


def _canonical_layers(text) -> str | None:
    if str(text).strip().lower() in ("all", "default"):
        return str(text).strip().lower()
    return format_layers(parse_layers(text, 1 << 16))


def switch_label(settings: Mapping[str, Any]) -> list[str]:
    """Short label parts of the switches in ``settings`` (as ``switch_settings`` gives them)."""
    parts = []
    if settings.get("attn_boost"):
        where = f" @{settings['attn_boost_layers']}" if settings.get("attn_boost_layers") else ""
        parts.append(f"{settings.get('attn_boost_mode', PAI)} {settings['attn_boost']:g}{where}")
    if settings.get("attn_shift"):
        where = f" @{settings['attn_shift_layers']}" if settings.get("attn_shift_layers") else ""
        parts.append(f"shift {settings['attn_shift']}{where}")
    if settings.get("vcd_alpha"):
        parts.append(f"vcd a={settings['vcd_alpha']:g} b={settings.get('vcd_beta', 0.1):g} T={settings.get('vcd_noise', 500)}")
    if settings.get("blind"):
        parts.append("blind")
    return parts
