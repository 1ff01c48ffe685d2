"""``attn_boost`` and ``attn_shift``: the language model's attention to non-text keys, edited in chosen
layers for the rows after the non-text span (``analysis/after_nontext.py``).

- ``attn_boost_mode=pai`` (PAI, ECCV 2024): each non-text key's pre-softmax score s becomes
  s + alpha * |s|. A score edit (``probe.SCORE_EDIT``): those layers compute their attention
  themselves (``core/scored_attention.py``), so any backend the probe wraps runs the other layers.
- ``attn_boost_mode=scale``: every non-text key's unnormalised weight exp(s) times 1 + alpha, i.e.
  log(1 + alpha) added to the attention mask (``probe.MASK_EDIT``): sdpa and eager keep their kernels.
- ``attn_shift=ENH:SUP`` (VAF / ClearSight, CVPR 2025): non-text scores times ENH and system-prompt
  scores times SUP, before the mask; the system prompt is the leading sink and template text.

The probe applies the same edits to the rows it scores, so it measures the attention as edited.

    with AttentionSwitches(model, switches, classes):
        out = model.generate(**inputs)
"""

from __future__ import annotations

import math

import torch

from lmms_textdom.analysis.after_nontext import AfterNontext
from lmms_textdom.core.modality import PositionClasses
from lmms_textdom.core.probe import MASK_EDIT, SCORE_EDIT, ProbeError, install, language_model_layers, text_attention_implementation, uninstall
from lmms_textdom.mitigations.settings import PAI, SCALE, Switches

#: Attention implementations that take the 4-D mask ``scale`` edits (flash kernels take none).
MASKED_IMPLEMENTATIONS = ("sdpa", "eager")


def _broadcast(selected: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """(batch, R, W) -> (batch, 1, ..., R, W) against scores (batch, ..., R, W)."""
    batch, rows, width = selected.shape
    return selected.view(batch, *([1] * (scores.dim() - 3)), rows, width)


class BoostScores:
    """PAI: s + alpha * |s| on non-text keys."""

    def __init__(self, after: AfterNontext, alpha: float):
        self.after, self.alpha = after, alpha

    def __call__(self, scores: torch.Tensor, rows: torch.Tensor, first_key: int) -> torch.Tensor:
        self.after.check_batch(scores.shape[0])
        chosen = _broadcast(self.after.select("nontext", self.after.nontext, rows, first_key, scores.shape[-1]), scores)
        return torch.where(chosen, scores + self.alpha * scores.abs(), scores)


class ShiftScores:
    """VAF: non-text scores times ``enhance``, system-prompt scores times ``suppress``."""

    def __init__(self, after: AfterNontext, enhance: float, suppress: float):
        self.after, self.enhance, self.suppress = after, enhance, suppress
        self.system = after.system()

    def __call__(self, scores: torch.Tensor, rows: torch.Tensor, first_key: int) -> torch.Tensor:
        self.after.check_batch(scores.shape[0])
        width = scores.shape[-1]
        nontext = _broadcast(self.after.select("nontext", self.after.nontext, rows, first_key, width), scores)
        system = _broadcast(self.after.select("system", self.system, rows, first_key, width), scores)
        return torch.where(nontext, scores * self.enhance, torch.where(system, scores * self.suppress, scores))


class ChainedScores:
    """Several score edits of one layer, in order (the shift, then PAI)."""

    def __init__(self, edits: list):
        self.edits = edits

    def __call__(self, scores, rows, first_key):
        for edit in self.edits:
            scores = edit(scores, rows, first_key)
        return scores


class ScaleMask:
    """``scale``: log(1 + alpha) added to the mask on non-text keys; chained after an existing mask edit."""

    def __init__(self, after: AfterNontext, alpha: float, before=None):
        self.after, self.bias, self.before = after, math.log1p(alpha), before

    def __call__(self, attention_mask, query, key):
        if self.before is not None:
            attention_mask = self.before(attention_mask, query, key)
        batch, _, query_len, _ = query.shape
        self.after.check_batch(batch)
        key_len = key.shape[2]
        device = query.device
        # the queries are the last query_len of the key_len cached positions (generate's dynamic cache)
        rows = torch.arange(key_len - query_len, key_len, device=device)
        if attention_mask is None:  # sdpa's causal fast path: spell the causal mask out
            width = key_len
            allowed = (torch.arange(width, device=device)[None, :] <= rows[:, None])[None, None]
            attention_mask = torch.zeros(allowed.shape, dtype=query.dtype, device=device).masked_fill_(~allowed, torch.finfo(query.dtype).min)
        if attention_mask.dim() != 4:
            raise ProbeError(f"attn_boost_mode=scale edits 4-D attention masks; this model passes a {attention_mask.dim()}-D one")
        if attention_mask.dtype == torch.bool:
            attention_mask = torch.zeros(attention_mask.shape, dtype=query.dtype, device=device).masked_fill_(~attention_mask, torch.finfo(query.dtype).min)
        chosen = self.after.select("nontext", self.after.nontext, rows, 0, attention_mask.shape[-1])[:, None]
        return attention_mask + chosen.to(attention_mask.dtype) * self.bias


class AttentionSwitches:
    """Context manager: ``switches``' attention edits on their layers for the batch described by ``classes``
    (nothing when they are neutral)."""

    def __init__(self, model, switches: Switches, classes: PositionClasses):
        self.model = model
        self.score_edits: dict[torch.nn.Module, object] = {}
        self.mask_edits: dict[torch.nn.Module, float] = {}
        self._previous: dict[torch.nn.Module, object] = {}
        self._installed_here = False
        if not switches.edits_attention:  # neutral: nothing to build or install
            return
        after = self._after = AfterNontext(classes)
        for module, layer in language_model_layers(model).items():
            edits = []
            if switches.shifts and layer in switches.shift_layers:
                edits.append(ShiftScores(after, switches.enhance, switches.suppress))
            if switches.boosts and layer in switches.boost_layers:
                if switches.boost_mode == PAI:
                    edits.append(BoostScores(after, switches.boost))
                elif switches.boost_mode == SCALE:
                    self.mask_edits[module] = switches.boost
            if edits:
                self.score_edits[module] = edits[0] if len(edits) == 1 else ChainedScores(edits)

    def __enter__(self) -> "AttentionSwitches":
        if self.mask_edits:
            implementation = text_attention_implementation(self.model)
            if implementation not in MASKED_IMPLEMENTATIONS:
                raise ProbeError(f"attn_boost_mode=scale edits the attention mask, which {implementation!r} attention does not take; use sdpa or eager, or attn_boost_mode=pai")
        if not (self.score_edits or self.mask_edits):
            return self
        self._installed_here = install(self.model)
        for module, edit in self.score_edits.items():
            if SCORE_EDIT in module.__dict__:
                raise ProbeError("another score edit is already active on this model")
            setattr(module, SCORE_EDIT, edit)
        for module, alpha in self.mask_edits.items():
            previous = module.__dict__.get(MASK_EDIT)
            self._previous[module] = previous
            setattr(module, MASK_EDIT, ScaleMask(self._after, alpha, previous))
        return self

    def __exit__(self, *exc) -> None:
        for module in self.score_edits:
            module.__dict__.pop(SCORE_EDIT, None)
        for module, previous in self._previous.items():
            if previous is None:
                module.__dict__.pop(MASK_EDIT, None)
            else:
                setattr(module, MASK_EDIT, previous)
        if self._installed_here:
            uninstall(self.model)
