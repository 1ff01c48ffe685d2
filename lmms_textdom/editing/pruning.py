"""[CLS]-guided visual token pruning (the FasterVLM method) and the pieces it is made of (torch only).

FasterVLM scores each of the N patch tokens of a ViT with a [CLS] token by the attention the [CLS]
query pays it, in the vision layer whose output the projector uses (LLaVA-1.5: the penultimate),
taken from the softmax over all keys ([CLS] included, not renormalised) and averaged over heads.
It keeps the top M = N (1 - r) tokens in their original order and drops the rest before the
language model, which then sees a shorter, contiguous sequence.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch

from lmms_textdom.core.errors import UsageError


def check_ratio(ratio: float) -> float:
    if not 0 <= ratio < 1:
        raise UsageError(f"prune_ratio must satisfy 0 <= r < 1 (0 = off), got {ratio}")
    return float(ratio)


def kept_count(num_tokens: int, ratio: float) -> int:
    """M = N (1 - r), rounded half up: 576 tokens keep 144 / 58 / 29 at r = 0.75 / 0.90 / 0.95."""
    check_ratio(ratio)
    # the tiny epsilon keeps exact products (576 * 0.25 = 144) from drifting below the .5 boundary
    return max(1, min(num_tokens, math.floor(num_tokens * (1 - ratio) + 0.5 + 1e-9)))


def top_m_in_order(scores: torch.Tensor, m: int) -> torch.Tensor:
    """Indices of the ``m`` highest scores of a 1-D tensor, in their original (raster) order."""
    return torch.topk(scores.float(), k=m, sorted=False).indices.sort().values


class ClsAttentionCapture:
    """Records the [CLS] query's attention row of one ViT attention layer while the tower runs.

    It hooks the layer's own q/k projections, so the tower keeps its fast attention and nothing is
    computed twice except one 1 x N dot product per head: ``scores`` is (images, N) after the run,
    the softmax over all N + 1 keys with the [CLS] column dropped, averaged over heads.
    """

    def __init__(self, attention: torch.nn.Module):
        for name in ("q_proj", "k_proj", "num_heads", "head_dim", "scale"):
            if not hasattr(attention, name):
                raise UsageError(f"{type(attention).__name__} has no {name}: cannot read its [CLS] attention")
        self.attention = attention
        self._query: torch.Tensor | None = None
        self.scores: torch.Tensor | None = None

    def _on_query(self, module, args, output):
        self._query = output[:, :1]  # the [CLS] position

    @torch.no_grad()
    def _on_key(self, module, args, output):
        a = self.attention
        batch, length, _ = output.shape
        q = self._query.float().reshape(batch, 1, a.num_heads, a.head_dim).transpose(1, 2)
        k = output.float().reshape(batch, length, a.num_heads, a.head_dim).transpose(1, 2)
        probs = (torch.matmul(q, k.transpose(-1, -2)) * a.scale).softmax(-1)  # (batch, heads, 1, length)
        self.scores = probs[:, :, 0, 1:].mean(1)

    @contextmanager
    def recording(self):
        hooks = [
            self.attention.q_proj.register_forward_hook(self._on_query),
            self.attention.k_proj.register_forward_hook(self._on_key),
        ]
        try:
            yield self
        finally:
            for hook in hooks:
                hook.remove()


def encoder_layers(tower: torch.nn.Module) -> torch.nn.ModuleList:
    """A vision tower's encoder layers, wherever this transformers version keeps them."""
    for name, module in tower.named_modules():
        if name.endswith("encoder.layers") and isinstance(module, torch.nn.ModuleList):
            return module
    raise UsageError(f"cannot find the encoder layers of {type(tower).__name__}")


def feature_layer_attention(tower: torch.nn.Module, feature_layer: int) -> torch.nn.Module:
    """The attention module of the layer whose output is ``hidden_states[feature_layer]``."""
    layers = encoder_layers(tower)
    index = len(layers) + feature_layer if feature_layer < 0 else feature_layer - 1
    if not 0 <= index < len(layers):
        raise UsageError(f"vision feature layer {feature_layer} is not the output of an attention layer")
    return layers[index].self_attn
