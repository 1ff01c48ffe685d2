"""ChatTS's time-series encoder (``ts_encoder``), written for transformers 5 without remote code.

Each series is cut into patches of ``patch_size`` values and every patch goes through the same
MLP on its own (no mixing across patches), giving ``ceil(L / patch_size)`` embeddings of the
language model's width. Releases differ in two places, both read from the checkpoint:

- the last, partial patch is padded with zeros (original) or with the series' last value (0801);
- 0801 appends a learned position embedding per value: index i for value i, and the reserved index
  ``max_sequence_length`` for pad slots; a patch's input is then its values followed by their
  embeddings, flattened value-major (width P + P * embedding_dim).

Parameter names are the checkpoint's own (``mlp.0`` ... ``mlp.{2(n-1)}``, ``position_embedding``),
so the weights load from the checkpoint's files under ``ts_encoder.*`` unchanged.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from torch import nn

from lmms_textdom.core.errors import UsageError
from lmms_textdom.models.chatts.config import ChatTSConfig
from lmms_textdom.models.checkpoint import checkpoint_file

PREFIX = "ts_encoder."


class TimeSeriesEncoder(nn.Module):
    def __init__(self, ts: dict, pad_with_last_value: bool):
        super().__init__()
        self.patch_size = int(ts["patch_size"])
        self.pad_with_last_value = pad_with_last_value
        self.position_embedding = None
        width = self.patch_size
        if ts.get("use_position_embedding"):
            self.max_sequence_length = int(ts["max_sequence_length"])
            embedding_dim = int(ts.get("embedding_dim", 16))
            # one extra row: the index of pad slots
            self.position_embedding = nn.Embedding(self.max_sequence_length + 1, embedding_dim)
            width += self.patch_size * embedding_dim
        hidden = int(ts["hidden_size"])
        layers: list[nn.Module] = []
        for i in range(int(ts["num_layers"])):
            if i:
                layers.append(nn.GELU())
            layers.append(nn.Linear(width if i == 0 else hidden, hidden))
        self.mlp = nn.Sequential(*layers)

    def patch_count(self, length: int) -> int:
        return math.ceil(length / self.patch_size)

    def patch_inputs(self, values: torch.Tensor) -> torch.Tensor:
        """(patches, width) MLP inputs of one encoded series of shape (L,)."""
        length = values.shape[0]
        count = self.patch_count(length)
        pad = count * self.patch_size - length
        fill = values[-1:] if self.pad_with_last_value else values.new_zeros(1)
        patches = torch.cat([values, fill.expand(pad)]).view(count, self.patch_size)
        if self.position_embedding is None:
            return patches
        index = torch.arange(count * self.patch_size, device=values.device)
        index[length:] = self.max_sequence_length
        embedded = self.position_embedding(index).view(count, -1)
        return torch.cat([patches, embedded.to(patches.dtype)], dim=1)

    def forward(self, series: list[torch.Tensor]) -> list[torch.Tensor]:
        """One (ceil(L / patch_size), hidden) tensor per encoded series (values after ChatTS's scaling)."""
        dtype = self.mlp[0].weight.dtype
        inputs = [self.patch_inputs(values.to(self.mlp[0].weight.device, dtype)) for values in series]
        out = self.mlp(torch.cat(inputs))
        return list(out.split([x.shape[0] for x in inputs]))


def _weight_files(pretrained: str, revision: str) -> list[Path]:
    """The safetensors files that hold ``ts_encoder.*`` (the shard index says which)."""
    index = checkpoint_file(pretrained, "model.safetensors.index.json", revision, required=False)
    if index is not None:
        weight_map = json.loads(index.read_text())["weight_map"]
        names = sorted({f for key, f in weight_map.items() if key.startswith(PREFIX)})
        if not names:
            raise UsageError(f"pretrained={pretrained}: the shard index lists no {PREFIX}* weights; this is not a ChatTS checkpoint")
        return [checkpoint_file(pretrained, name, revision) for name in names]
    single = checkpoint_file(pretrained, "model.safetensors", revision, required=False)
    if single is None:
        raise UsageError(f"pretrained={pretrained} has neither model.safetensors.index.json nor model.safetensors")
    return [single]


def read_encoder_weights(pretrained: str, revision: str = "main") -> dict[str, torch.Tensor]:
    """``ts_encoder.*`` tensors of the checkpoint, without the prefix (only these keys are read)."""
    from safetensors import safe_open

    state = {}
    for path in _weight_files(pretrained, revision):
        with safe_open(str(path), framework="pt") as handle:
            for key in handle.keys():
                if key.startswith(PREFIX):
                    state[key[len(PREFIX) :]] = handle.get_tensor(key)
    if not state:
        raise UsageError(f"pretrained={pretrained} holds no {PREFIX}* weights; this is not a ChatTS checkpoint")
    return state


def load_encoder(config: ChatTSConfig, pretrained: str, revision: str, dtype: torch.dtype, device) -> TimeSeriesEncoder:
    encoder = TimeSeriesEncoder(config.ts, pad_with_last_value=config.release == "0801")
    state = read_encoder_weights(pretrained, revision)
    missing = sorted(set(encoder.state_dict()) - set(state))
    unexpected = sorted(set(state) - set(encoder.state_dict()))
    if missing or unexpected:
        raise UsageError(
            f"pretrained={pretrained}: the {PREFIX}* weights do not match config.ts "
            f"(missing {[PREFIX + k for k in missing]}, unexpected {[PREFIX + k for k in unexpected]})"
        )
    try:
        encoder.load_state_dict(state)
    except RuntimeError as exc:  # shape mismatch
        raise UsageError(f"pretrained={pretrained}: the {PREFIX}* weights do not fit config.ts: {str(exc).splitlines()[-1].strip()}") from None
    return encoder.to(device=device, dtype=dtype).eval()
