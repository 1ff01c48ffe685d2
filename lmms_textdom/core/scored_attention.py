"""Attention of one layer computed here, with its pre-softmax scores edited (``probe.SCORE_EDIT``).

A score edit cannot be written as a mask (PAI's s + alpha*|s| depends on s itself), so in the layers
that carry one the attention is computed by the formula of the model files' own
``eager_attention_forward``: scores = Q K^T * scaling (softcapped where the layer asks), the edit,
plus the mask, softmax in float32, times V. Every other layer keeps the implementation the model was
loaded with. Query rows go in chunks, so no layer materialises more than about
``PASS_BUDGET_BYTES`` of float32 scores, whatever the prompt length.

The edit is a callable ``edit(scores, rows, first_key) -> scores``: scores (batch, ..., R, W) float32,
rows the absolute positions of the R query rows, first_key the position of column 0. The probe calls
the same edit on the rows it scores (``probe._softmax_rows``), so it measures the attention as edited.

Positions follow generate's dynamic cache: the keys of a call are positions 0 .. K - 1 and its Q
query rows the last Q of them (the same convention as the knock-outs' mask edit).
"""

from __future__ import annotations

import torch

from lmms_textdom.core.probe import PASS_BUDGET_BYTES, BlockMask, ProbeError, _forced_bias

#: attention kwargs of terms the formula here does not have (attention sinks): refused
_UNSUPPORTED_KWARGS = ("s_aux", "sinks")


def _mask_rows(mask, start: int, rows: int, first_row: int, width: int, device) -> torch.Tensor | None:
    """(batch or 1, 1 or heads, rows, width) additive float32 bias of query rows start .. start + rows - 1 of this call."""
    if isinstance(mask, torch.Tensor) and mask.dim() == 4:
        part = mask[:, :, start : start + rows, :width]
        if part.is_floating_point():
            return part.float()
        return torch.zeros(part.shape, dtype=torch.float32, device=device).masked_fill_(~part.bool(), float("-inf"))
    # no mask (sdpa's causal fast path) or flash attention's 2-D padding mask: causal limits by position
    return _forced_bias(mask, first_row + start, rows, width, None, device)  # no window: score edits refuse sliding windows


def scored_attention(module, query, key, value, attention_mask, edit, scaling=None, dropout=0.0, softcap=None, sliding_window=None, **kwargs):
    """``eager_attention_forward``'s result, (batch, Q, heads, head_dim) and no weights, with ``edit`` applied to the scores."""
    unknown = [name for name in _UNSUPPORTED_KWARGS if kwargs.get(name) is not None]
    if unknown:
        raise ProbeError(f"{type(module).__name__} passes {unknown} to its attention, which the score edit does not implement")
    if BlockMask and isinstance(attention_mask, BlockMask):
        raise ProbeError("score edits (attn_boost_mode=pai, attn_shift) need sdpa, eager or flash attention, not flex attention")
    if sliding_window is not None:
        raise ProbeError("score edits do not act on sliding-window layers (their cache holds only the latest keys)")
    batch, heads, query_len, head_dim = query.shape
    key_len = key.shape[2]
    groups = heads // key.shape[1]
    keys = key.repeat_interleave(groups, dim=1).float() if groups > 1 else key.float()
    values = value.repeat_interleave(groups, dim=1) if groups > 1 else value
    scaling = head_dim**-0.5 if scaling is None else scaling
    first_row = key_len - query_len
    chunk = max(1, PASS_BUDGET_BYTES // (4 * batch * heads * key_len))
    out = []
    for start in range(0, query_len, chunk):
        rows = min(chunk, query_len - start)
        scores = torch.matmul(query[:, :, start : start + rows].float(), keys.transpose(-1, -2)) * scaling
        if softcap:
            scores = torch.tanh(scores / softcap) * softcap
        positions = torch.arange(first_row + start, first_row + start + rows, device=query.device)
        scores = edit(scores, positions, 0)
        bias = _mask_rows(attention_mask, start, rows, first_row, key_len, query.device)
        if bias is not None:
            # the float minimum, not -inf (as transformers' masks): a padding row that sees no key gets a
            # uniform softmax, not NaN, which would reach later rows through its zero-weighted values
            scores = scores + bias.clamp(min=torch.finfo(torch.float32).min)
        weights = scores.softmax(-1).to(values.dtype)
        if dropout and module.training:
            weights = torch.nn.functional.dropout(weights, p=dropout)
        out.append(torch.matmul(weights, values))
    return torch.cat(out, dim=2).transpose(1, 2).contiguous(), None

