"""Scores for pruning VideoLLaMA3's visual tokens: attention received in the tower's last block.

The SigLIP-NaViT tower has no [CLS] token; each image and each video frame is its own attention
segment (``cu_seqlens``). A patch's score is the attention it receives in the last encoder block
(softmax per segment, recomputed in float32 from the block's own q/k projections and 2-D rotary
embedding, averaged over heads, summed over queries: ``editing.received_attention``); a merged
token's score is the mean over its merge x merge patches, which are consecutive in the tower's
order, as the bilinear 2x down-sampling that forms the token averages them.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

from lmms_textdom.editing.received_attention import received_by_rotary_block


class LastBlockReceivedAttention:
    """While ``recording()``, scores every merged token of each grid row the tower encodes.

    ``scores`` then holds one 1-D tensor per image or video (frame-major, raster order), as many
    as the tower outputs for it.
    """

    def __init__(self, tower: torch.nn.Module):
        self.tower = tower
        self.attention = tower.encoder.layers[-1].self_attn
        self._merges: torch.Tensor | None = None
        self._grid: torch.Tensor | None = None
        self.patch_scores: torch.Tensor | None = None
        self.scores: list[torch.Tensor] = []

    def _on_tower(self, module, args, kwargs):
        self._grid, self._merges = kwargs["grid_thw"], kwargs["merge_sizes"]

    @torch.no_grad()
    def _on_attention(self, module, args, kwargs):
        hidden = args[0] if args else kwargs["hidden_states"]
        a = self.attention
        self.patch_scores = received_by_rotary_block(a, a.q_proj(hidden), a.k_proj(hidden), kwargs)

    def _merged(self) -> list[torch.Tensor]:
        pieces = self.patch_scores.split(self._grid.prod(-1).tolist())
        return [p.view(-1, int(m) ** 2).mean(-1) for p, m in zip(pieces, self._merges.tolist())]

    @contextmanager
    def recording(self):
        hooks = [
            self.tower.register_forward_pre_hook(self._on_tower, with_kwargs=True),
            self.attention.register_forward_pre_hook(self._on_attention, with_kwargs=True),
        ]
        self.patch_scores, self.scores = None, []
        try:
            yield self
        finally:
            for hook in hooks:
                hook.remove()
        if self.patch_scores is None:
            raise RuntimeError("the vision tower's last block did not run while recording")
        self.scores = self._merged()
