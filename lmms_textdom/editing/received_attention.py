"""Token scores for vision towers without [CLS]: attention received in a full-attention block.

Qwen2.5-VL's ViT has no [CLS] token, attends within windows in most blocks, and merges each 2 x 2
group of patches into one language-model token. A merged token is scored by the attention its
patches *receive* in the tower's last full-attention block (the LightCompress recipe for Qwen):
the block's softmax rows are recomputed in float32 from its own ``qkv`` output and rotary
embedding, one softmax per image (or per frame pair) as ``cu_seqlens`` delimits it, averaged over
heads and summed over queries; a merged token's score is the mean over its 4 patches, reported
in the tower's output (raster) order, since the blocks see the patches in window order.

The block itself keeps its fast attention; the extra work is one q·kᵀ product and softmax for
that block (no value product), done in query chunks so memory stays O(chunk x segment).
"""

from __future__ import annotations

from contextlib import contextmanager

import torch

from lmms_textdom.core.errors import UsageError

#: elements of one (heads x queries x keys) float32 block of scores computed at a time (128 MB)
SCORE_BUDGET = 32 * 1024 * 1024


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


def received_attention(q: torch.Tensor, k: torch.Tensor, bounds: list[int], scale: float) -> torch.Tensor:
    """Per key: softmax(q kᵀ · scale) within each [bounds[i], bounds[i+1]) segment, mean over heads, sum over queries.

    ``q``, ``k``: (positions, heads, head_dim) float32.
    """
    heads = q.shape[1]
    q = q * scale  # scaled once here rather than on every score block
    received = torch.zeros(q.shape[0], dtype=torch.float32, device=q.device)
    for start, end in zip(bounds[:-1], bounds[1:]):
        keys_t = k[start:end].permute(1, 2, 0)  # (heads, d, n)
        chunk = max(1, SCORE_BUDGET // (heads * (end - start)))
        for first in range(start, end, chunk):
            queries = q[first : min(first + chunk, end)].transpose(0, 1)
            probs = torch.matmul(queries, keys_t).softmax(-1)
            received[start:end] += probs.sum(dim=(0, 1)) / heads
    return received


def last_full_attention_block(tower: torch.nn.Module) -> torch.nn.Module:
    blocks, full = getattr(tower, "blocks", None), getattr(tower, "fullatt_block_indexes", None)
    if blocks is None or not full:
        raise UsageError(f"{type(tower).__name__} has no full-attention blocks (fullatt_block_indexes) to score tokens with")
    return blocks[max(full)].attn


def window_order(tower: torch.nn.Module, grid_thw: torch.Tensor) -> torch.Tensor:
    """For each merged token in the blocks' (window) order, its index in the tower's output order."""
    if hasattr(tower, "get_window_index"):  # transformers 5.0-5.1 keep it on the tower
        return tower.get_window_index(grid_thw)[0]
    from transformers.vision_utils import get_vision_window_index

    return get_vision_window_index(grid_thw, tower.spatial_merge_size, tower.window_size, tower.patch_size)[0]


def received_by_rotary_block(attention, q: torch.Tensor, k: torch.Tensor, call: dict) -> torch.Tensor:
    """Per-patch attention received in a rotary ViT block, from its q and k projections' outputs.

    ``attention``: the block's attention module (``num_heads``, ``head_dim``, ``scaling``);
    ``call``: the keyword arguments it was called with (``position_embeddings`` = (cos, sin) in the
    rotate-half form, ``cu_seqlens`` = the attention segments). Recomputed in float32.
    """
    q, k = (x.float().reshape(x.shape[0], attention.num_heads, attention.head_dim) for x in (q, k))
    cos, sin = (t.float().unsqueeze(-2) for t in call["position_embeddings"])
    q, k = (x * cos + rotate_half(x) * sin for x in (q, k))
    return received_attention(q, k, call["cu_seqlens"].tolist(), attention.scaling)


class ReceivedAttentionScorer:
    """Scores every merged token of each image (or video) a windowed ViT encodes while recording.

    After a tower run inside ``recording()``, ``scores`` holds one 1-D tensor per grid row
    (image or video), in the order of the tower's output tokens for it.
    """

    def __init__(self, tower: torch.nn.Module):
        self.tower = tower
        self.attention = last_full_attention_block(tower)
        for name in ("qkv", "num_heads", "head_dim", "scaling"):
            if not hasattr(self.attention, name):
                raise UsageError(f"{type(self.attention).__name__} has no {name}: cannot recompute its attention")
        self._grid: torch.Tensor | None = None
        self._call: dict = {}
        self.patch_scores: torch.Tensor | None = None
        self.scores: list[torch.Tensor] = []

    def _on_tower(self, module, args, kwargs):
        self._grid = kwargs["grid_thw"] if "grid_thw" in kwargs else args[1]

    def _on_attention(self, module, args, kwargs):
        self._call = kwargs

    @torch.no_grad()
    def _on_qkv(self, module, args, output):
        qkv = output.view(output.shape[0], 3, -1)
        self.patch_scores = received_by_rotary_block(self.attention, qkv[:, 0], qkv[:, 1], self._call)

    def _merged_scores(self) -> list[torch.Tensor]:
        unit = self.tower.spatial_merge_size**2
        merged = self.patch_scores.view(-1, unit).mean(-1)
        order = window_order(self.tower, self._grid).to(merged.device)
        merged = merged[torch.argsort(order)]
        return list(merged.split((self._grid.prod(-1) // unit).tolist()))

    @contextmanager
    def recording(self):
        hooks = [
            self.tower.register_forward_pre_hook(self._on_tower, with_kwargs=True),
            self.attention.register_forward_pre_hook(self._on_attention, with_kwargs=True),
            self.attention.qkv.register_forward_hook(self._on_qkv),
        ]
        self.patch_scores, self.scores = None, []
        try:
            yield self
        finally:
            for hook in hooks:
                hook.remove()
            self._call = {}
        if self.patch_scores is None:
            raise RuntimeError("the vision tower ran no full-attention block while recording")
        self.scores = self._merged_scores()


def raster_group_mean(patch_scores: torch.Tensor, grids_hw: list[tuple[int, int]], kernel: tuple[int, int]) -> list[torch.Tensor]:
    """Per image: the mean score of each ``kernel`` group of its raster-ordered patches, groups in raster order.

    ``patch_scores`` holds the images' patches one after another, each image row by row; an image
    of ``h x w`` patches gives ``(h / kh) * (w / kw)`` group scores, the order a 2 x 2 merge emits.
    """
    kh, kw = kernel
    out, start = [], 0
    for h, w in grids_hw:
        image = patch_scores[start : start + h * w].view(h // kh, kh, w // kw, kw)
        out.append(image.mean(dim=(1, 3)).flatten())
        start += h * w
    return out


class RasterReceivedScorer:
    """Attention received per merged token, for a ViT whose blocks see each image's patches in raster order.

    For towers without windows whose attention module has its own ``q_proj`` / ``k_proj`` and gets the
    rotary ``(cos, sin)`` as ``position_embeddings`` (rotate-half form) and ``cu_seqlens`` per image:
    the scored block (the tower's last by default, the one whose output is merged) keeps its fast
    attention; its q and k are taken from the projections' outputs. After a tower run inside
    ``recording()``, ``scores`` holds one tensor per image, in the merged tokens' order.
    """

    def __init__(self, tower: torch.nn.Module, attention: torch.nn.Module, kernel: tuple[int, int]):
        for name in ("q_proj", "k_proj", "num_heads", "head_dim", "scaling"):
            if not hasattr(attention, name):
                raise UsageError(f"{type(attention).__name__} has no {name}: cannot recompute its attention")
        self.tower, self.attention, self.kernel = tower, attention, tuple(kernel)
        self._grid: torch.Tensor | None = None
        self._call: dict = {}
        self._query: torch.Tensor | None = None
        self.patch_scores: torch.Tensor | None = None
        self.scores: list[torch.Tensor] = []

    def _on_tower(self, module, args, kwargs):
        self._grid = kwargs["grid_thw"] if "grid_thw" in kwargs else args[1]

    def _on_attention(self, module, args, kwargs):
        self._call = kwargs

    def _on_query(self, module, args, output):
        self._query = output

    @torch.no_grad()
    def _on_key(self, module, args, output):
        self.patch_scores = received_by_rotary_block(self.attention, self._query, output, self._call)

    @contextmanager
    def recording(self):
        a = self.attention
        hooks = [
            self.tower.register_forward_pre_hook(self._on_tower, with_kwargs=True),
            a.register_forward_pre_hook(self._on_attention, with_kwargs=True),
            a.q_proj.register_forward_hook(self._on_query),
            a.k_proj.register_forward_hook(self._on_key),
        ]
        self.patch_scores, self.scores = None, []
        try:
            yield self
        finally:
            for hook in hooks:
                hook.remove()
            self._call, self._query = {}, None
        if self.patch_scores is None:
            raise RuntimeError("the vision tower ran the scored block no time while recording")
        if (self._grid[:, 0] != 1).any():
            raise ValueError("raster scoring takes single-frame grids (t = 1)")
        grids = [(int(h), int(w)) for _, h, w in self._grid.tolist()]
        self.scores = raster_group_mean(self.patch_scores, grids, self.kernel)
