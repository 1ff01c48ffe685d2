"""A ChatTS checkpoint's config.json, read without its remote code: the Qwen2 language model's
config plus the ``ts`` section, and which release (original or 0801) the checkpoint is.

Both releases keep the language model's fields at the top level of config.json (Qwen2.5-14B)
and the time-series encoder's in ``ts``. The original release has ``model_type: qwen2``, patch 16,
no position embedding; 0801 has ``model_type: chatts``, patch 8, ``use_position_embedding``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from transformers import Qwen2Config

from lmms_textdom.core.errors import UsageError
from lmms_textdom.models.checkpoint import checkpoint_file

#: config.json keys that belong to the ChatTS wrapper, not to the Qwen2 language model
WRAPPER_KEYS = ("ts", "ts_token_start_index", "ts_token_end_index", "auto_map", "model_type", "architectures", "_name_or_path")
REQUIRED_TS_KEYS = ("patch_size", "num_layers", "hidden_size", "num_features")


@dataclass(frozen=True)
class ChatTSConfig:
    language_model: Qwen2Config
    ts: dict[str, Any]
    release: str  # "original" (zero padding, value-offset prefix) or "0801" (last-value padding, position embedding)

    @property
    def patch_size(self) -> int:
        return int(self.ts["patch_size"])


def release_of(raw: dict, ts: dict) -> str:
    """0801 checkpoints say ``model_type: chatts`` and carry the position embedding; the original does neither."""
    return "0801" if raw.get("model_type") == "chatts" or ts.get("use_position_embedding") else "original"


def parse_chatts_config(raw: dict, source: str) -> ChatTSConfig:
    ts = raw.get("ts")
    if not isinstance(ts, dict) or any(k not in ts for k in REQUIRED_TS_KEYS):
        raise UsageError(
            f"{source} is not a ChatTS checkpoint: its config.json has no `ts` section with "
            f"{', '.join(REQUIRED_TS_KEYS)} (model_type {raw.get('model_type')!r}); point pretrained= at "
            "bytedance-research/ChatTS-14B or a copy of it"
        )
    if "qwen3" in f"{raw.get('model_type')} {raw.get('architectures')}".lower():
        raise UsageError(f"{source} is a Qwen3-based ChatTS (ChatTS-8B); chatts_textdom loads the Qwen2.5-based ChatTS-14B only")
    if ts.get("use_position_idx") and not ts.get("use_position_embedding"):
        raise UsageError(f"{source}: ts.use_position_idx is set; no released ChatTS checkpoint uses it and it is not supported")
    if int(ts["num_features"]) != 2:
        raise UsageError(f"{source}: ts.num_features is {ts['num_features']}; ChatTS encodes (value, mask) pairs, num_features 2")
    fields = {k: v for k, v in raw.items() if k not in WRAPPER_KEYS}
    language_model = Qwen2Config(**fields)
    if int(ts["hidden_size"]) != language_model.hidden_size:
        raise UsageError(f"{source}: ts.hidden_size {ts['hidden_size']} differs from the language model's hidden_size {language_model.hidden_size}")
    return ChatTSConfig(language_model, dict(ts), release_of(raw, ts))


def read_chatts_config(pretrained: str, revision: str = "main") -> ChatTSConfig:
    path = checkpoint_file(pretrained, "config.json", revision)
    try:
        raw = json.loads(path.read_text())
    except ValueError as exc:
        raise UsageError(f"pretrained={pretrained}: config.json is not valid JSON ({exc})") from None
    return parse_chatts_config(raw, f"pretrained={pretrained}")
