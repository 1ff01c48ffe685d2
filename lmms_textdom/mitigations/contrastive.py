"""Visual contrastive decoding (VCD, CVPR 2024) as a logits processor that owns a second model state.

At each step generate hands the processor the clean next-token logits l (what earlier processors left
of them); the processor steps its own copy of the model over the corrupted input v' and the same
tokens, gets l', and returns

    (1 + alpha) * l - alpha * l',   with -inf where l < log(beta) + max(l)

the second being VCD's plausibility cut: a token whose clean probability is below beta times the
clean top token's is dropped (the normalisers of l cancel, so the cut reads the same on logits).
Sampling warpers (temperature, top-k, top-p) come after it, as in VCD; greedy takes its argmax.

The second state is a plain generate loop of the model's own helpers (``prepare_inputs_for_generation``,
``_update_model_kwargs_for_generation``), with its own KV cache, run outside the attention probe
(``probe.unprobed``): the probe records the main pass only. Cost: a second prefill (non-text encoder
included) and one more forward per generated token, and a second KV cache: about twice the compute
and KV memory of a plain run.
"""

from __future__ import annotations

import inspect
import math

import torch
from transformers import LogitsProcessor

from lmms_textdom.core.probe import unprobed
from lmms_textdom.mitigations.noise import Corruption


class SecondPass:
    """The model stepped over ``inputs`` (what generate was given) one token at a time, beside generate."""

    def __init__(self, model, inputs: dict):
        self.model = model
        kwargs = {k: v for k, v in inputs.items() if v is not None}
        ids = kwargs.pop("input_ids", None)
        prompt = ids if ids is not None else kwargs["inputs_embeds"]
        batch, device = prompt.shape[0], prompt.device
        if kwargs.get("attention_mask") is None:
            kwargs["attention_mask"] = torch.ones(batch, prompt.shape[1], dtype=torch.long, device=device)
        if kwargs.get("position_ids") is None and "position_ids" in inspect.signature(model.forward).parameters:
            seen = dict(kwargs)
            if ids is None:  # generate keeps an empty input_ids beside embeddings
                seen["input_ids"] = torch.empty(batch, 0, dtype=torch.long, device=device)
            kwargs["position_ids"] = model._prepare_position_ids_for_generation(prompt, seen)
        if bool((kwargs["attention_mask"] == 1).all()):
            kwargs["attention_mask"] = None  # as generate drops it: no padding
        if model._supports_logits_to_keep():
            kwargs["logits_to_keep"] = 1
        kwargs["use_cache"] = True
        self.kwargs = kwargs
        self.ids = ids if ids is not None else torch.empty(batch, 0, dtype=torch.long, device=device)
        self.steps = 0  # tokens fed after the prompt

    def logits(self, token: torch.Tensor | None) -> torch.Tensor:
        """Next-token logits (batch, vocabulary) float32: after the prompt (``token`` None), then after each token fed."""
        model = self.model
        if token is None:
            inputs = model.prepare_inputs_for_generation(self.ids, is_first_iteration=True, **self.kwargs)
        else:
            self.ids = torch.cat([self.ids, token[:, None].to(self.ids.device)], dim=1)
            self.steps += 1
            inputs = model.prepare_inputs_for_generation(self.ids, next_sequence_length=1, **self.kwargs)
        outputs = model(**inputs, return_dict=True)
        self.kwargs = model._update_model_kwargs_for_generation(outputs, self.kwargs)
        return outputs.logits[:, -1].float()


class ContrastiveDecoding(LogitsProcessor):
    """VCD's contrast of the clean logits with those of ``second`` (the model over the corrupted input).

    ``prompt_ids``: how many input ids the main generate started from (0 with embeddings); every
    later id is a token both states have to take.
    """

    def __init__(self, second: SecondPass, corruption: Corruption, alpha: float, beta: float, prompt_ids: int):
        self.second, self.corruption = second, corruption
        self.alpha, self.log_beta = alpha, math.log(beta) if beta > 0 else -math.inf
        self.prompt_ids = prompt_ids
        self.started = False

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        generated = input_ids.shape[1] - self.prompt_ids
        expected = self.second.steps + 1 if self.started else 0
        if generated != expected:
            raise RuntimeError(f"contrastive decoding lost step: generate is at token {generated}, its second pass at {expected}")
        token = input_ids[:, -1] if self.started else None
        with torch.inference_mode(), unprobed(), self.corruption.active():
            noisy = self.second.logits(token).to(scores.device)
        self.started = True
        clean = scores.float()
        contrast = (1 + self.alpha) * clean - self.alpha * noisy
        cutoff = clean.max(dim=-1, keepdim=True).values + self.log_beta
        return contrast.masked_fill(clean < cutoff, -math.inf).to(scores.dtype)
