"""Inputs of one teacher-forced forward pass that holds the rows ``generate`` would have produced.

For answers a_1 .. a_T of a batch, generate's probe records the query rows at the last prompt
position and at a_1 .. a_{T-1}. Attention is causal, so one forward pass over the prompt followed
by a_1 .. a_{T-1} computes those rows (up to kernel rounding), if every position sees what it saw
during generate: the same input at the same rotary position with the same mask. So the prompt
keeps the layout generate got (left padding), the answers follow it right-padded with the pad id
(what generate writes after a finished sequence; those rows are cut off per sample), and the
positions and masks are extended by generate's own rules (``_prepare_position_ids_for_generation``
for the prompt, ``_update_model_kwargs_for_generation`` for the answer tokens), which also cover
multimodal rotary positions (Qwen2.5-VL's 3-D positions and its text row) and token-type ids.

    answers = answer_tensor(answer_ids, pad_id)
    with AttentionProbe(model, classes, answer_rows=answers.shape[1]) as probe:
        model(**forced_inputs(model, inputs, answers))
    stats = probe.stats([len(a) for a in answer_ids])
"""

from __future__ import annotations

import inspect
from typing import Sequence

import torch


def answer_tensor(answers: Sequence[Sequence[int]], pad_id: int, device=None) -> torch.Tensor:
    """(batch, longest) token ids, shorter answers right-padded with ``pad_id``."""
    if not answers or any(len(a) == 0 for a in answers):
        raise ValueError("every answer needs at least one token (its first row is the last prompt position's)")
    longest = max(len(a) for a in answers)
    out = torch.full((len(answers), longest), int(pad_id), dtype=torch.long, device=device)
    for b, answer in enumerate(answers):
        out[b, : len(answer)] = torch.as_tensor(list(answer), dtype=torch.long)
    return out


def _accepts(model, name: str) -> bool:
    return name in inspect.signature(model.forward).parameters


def forced_inputs(model, inputs: dict, answers: torch.Tensor) -> dict:
    """Keyword arguments of ``model``'s forward over the prompt ``inputs`` (what generate was given:
    ``input_ids`` or ``inputs_embeds``, the 2-D ``attention_mask`` and any multimodal inputs) and the
    first T - 1 tokens of ``answers`` (batch, T); the pass holds query rows P - 1 .. P + T - 2."""
    kwargs = {k: v for k, v in inputs.items() if v is not None}
    ids, embeds = kwargs.pop("input_ids", None), kwargs.pop("inputs_embeds", None)
    if (ids is None) == (embeds is None):
        raise ValueError("the prompt inputs need exactly one of input_ids and inputs_embeds")
    prompt = ids if ids is not None else embeds
    batch, prompt_len = prompt.shape[:2]
    if answers.dim() != 2 or answers.shape[0] != batch or answers.shape[1] < 1:
        raise ValueError(f"answers must be (batch={batch}, tokens >= 1) token ids, got {tuple(answers.shape)}")
    if kwargs.get("attention_mask") is None:
        kwargs["attention_mask"] = torch.ones(batch, prompt_len, dtype=torch.long, device=prompt.device)
    if kwargs.get("position_ids") is None and _accepts(model, "position_ids"):
        seen = dict(kwargs)
        if ids is None:  # generate keeps an empty input_ids beside embeddings
            seen["input_ids"] = torch.empty(batch, 0, dtype=torch.long, device=prompt.device)
        kwargs["position_ids"] = model._prepare_position_ids_for_generation(prompt, seen)
    extra = answers.shape[1] - 1
    answers = answers[:, :extra].to(prompt.device)
    if extra:
        kwargs = model._update_model_kwargs_for_generation({}, kwargs, num_new_tokens=extra)
    if bool((kwargs["attention_mask"] == 1).all()):
        kwargs["attention_mask"] = None  # as generate drops it: no padding
    if ids is not None:
        kwargs["input_ids"] = torch.cat([ids, answers], dim=1)
    else:  # generate embeds each new token with the model's own embedding layer
        new = model.get_input_embeddings()(answers.to(model.get_input_embeddings().weight.device))
        kwargs["inputs_embeds"] = torch.cat([embeds, new.to(embeds.device, embeds.dtype)], dim=1)
    if _accepts(model, "logits_to_keep"):
        kwargs["logits_to_keep"] = 1  # the logits are not needed: no (sequence x vocabulary) tensor
    kwargs["use_cache"] = False
    return kwargs
