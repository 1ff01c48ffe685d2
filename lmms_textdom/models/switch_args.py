"""The mitigation switches' model_args, shared by every family (``lmms_textdom.mitigations``).

lmms-eval splits ``--model_args`` on commas, so values with two parts use a colon (``attn_shift=1.2:0.9``)
and layer lists a '+' (``attn_boost_layers=2-7+12``).
"""

from __future__ import annotations

from lmms_textdom.analysis.layers import LAYER_SYNTAX, check_layer_syntax
from lmms_textdom.mitigations.settings import BOOST_MODES, DIFFUSION_STEPS, PAI, parse_shift
from lmms_textdom.models.args import Arg, passes


def _layers_arg(name: str, default_text: str) -> Arg:
    return Arg(
        name, None, f"layers it acts on; default {default_text}",
        check=lambda text: str(text).strip().lower() == "default" or passes(check_layer_syntax, text), requirement=LAYER_SYNTAX,
    )  # fmt: skip


#: the definitions of ``mitigations.settings.SWITCH_ARGS``, in its order (a test holds them together)
SWITCH_MODEL_ARGS = (
    Arg(
        "attn_boost", 0.0, "weight on non-text keys for the rows after the non-text span: pai = s + alpha*|s| (PAI), "
        "scale = weights x (1 + alpha); 0 = off", kind=float,
    ),  # fmt: skip
    Arg("attn_boost_mode", PAI, "pai: score boost, computed in the chosen layers (any backend); scale: a mask bias (sdpa, eager)", choices=BOOST_MODES),
    _layers_arg("attn_boost_layers", "2 to the last layer (PAI's 2-31 of 32)"),
    Arg(
        "attn_shift", "1:1", "ENH:SUP: non-text scores x ENH, system-prompt scores x SUP, rows after the non-text span "
        "(VAF/ClearSight); 1:1 = off", check=lambda text: passes(parse_shift, text),
        requirement="ENH:SUP, two numbers > 0 joined by ':' (e.g. 1.15:0.95)",
    ),  # fmt: skip
    _layers_arg("attn_shift_layers", "the middle layers (ClearSight's 9-14 of 32, scaled to the depth)"),
    Arg(
        "vcd_alpha", 0.0, "visual contrastive decoding: (1 + a) logit(clean) - a logit(noised input); 0 = off",
        kind=float, check=lambda a: a >= 0, requirement="a number >= 0 (0 = off)",
    ),  # fmt: skip
    Arg(
        "vcd_beta", 0.1, "VCD's plausibility cut: drop tokens with clean p < beta * max p", kind=float,
        check=lambda b: 0 <= b <= 1, requirement="a number with 0 <= beta <= 1",
    ),  # fmt: skip
    Arg(
        "vcd_noise", 500, f"VCD: diffusion steps of noise on the non-text input (0 .. {DIFFUSION_STEPS - 1})", kind=int,
        check=lambda t: 0 <= t < DIFFUSION_STEPS, requirement=f"an integer 0 .. {DIFFUSION_STEPS - 1}",
    ),  # fmt: skip
    Arg("vcd_seed", 0, "VCD: seed of the noise (drawn once per batch)", kind=int),
    Arg("blind", False, "drop the non-text input and its placeholders; the prompt is otherwise the same (MDI/AEI: none)", kind=bool),
)
