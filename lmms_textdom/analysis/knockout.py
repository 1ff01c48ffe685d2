"""Layer knock-outs: in chosen language-model layers, the rows after the prompt's non-text span (the
text after it and every generated token) cannot attend to non-text positions.

The edit is made on the attention mask inside the probe's attention function (``probe.MASK_EDIT``),
so the model's own attention and the probe see the same mask: the probe then measures zero mass on
non-text positions from the knocked-out rows. Everything else (other layers, the rows up to the end
of the non-text span, the non-text tokens themselves) is unchanged.

    with KnockOut(model, {0, 1, 2}, classes):
        out = model.generate(**inputs)
"""

from __future__ import annotations

import torch

from lmms_textdom.analysis.after_nontext import AfterNontext
from lmms_textdom.core.modality import PositionClasses
from lmms_textdom.core.probe import MASK_EDIT, ProbeError, install, language_model_layers, text_attention_implementation, uninstall

#: Attention implementations that take the 4-D mask the edit writes (flash kernels take none).
MASKED_IMPLEMENTATIONS = ("sdpa", "eager")


class KnockOut:
    """Context manager: knock non-text positions out of ``layers`` for the batch described by ``classes``."""

    def __init__(self, model, layers, classes: PositionClasses):
        self.model = model
        self.classes = classes
        chosen = set(layers)
        self.modules = [m for m, layer in language_model_layers(model).items() if layer in chosen]
        self._after = AfterNontext(classes)
        self._installed_here = False

    def __enter__(self) -> "KnockOut":
        for module in self.modules:
            if getattr(module, MASK_EDIT, None) is not None:
                raise ProbeError("another knock-out is already active on this model")
        implementation = text_attention_implementation(self.model)
        if implementation not in MASKED_IMPLEMENTATIONS:
            raise ProbeError(f"knock-outs edit the attention mask, which {implementation!r} attention does not take; use sdpa or eager")
        self._installed_here = install(self.model)
        for module in self.modules:
            setattr(module, MASK_EDIT, self.edit)
        return self

    def __exit__(self, *exc) -> None:
        for module in self.modules:
            if getattr(module, MASK_EDIT, None) is not None:
                delattr(module, MASK_EDIT)
        if self._installed_here:
            uninstall(self.model)

    def blocked(self, query_len: int, key_len: int, mask_len: int, device: torch.device) -> torch.Tensor:
        """(batch, 1, query_len, mask_len) bool: True where a row may no longer see a column."""
        # the queries are the last query_len of the key_len cached positions (generate's dynamic cache)
        rows = torch.arange(key_len - query_len, key_len, device=device)
        return self._after.select("nontext", self._after.nontext, rows, 0, mask_len)[:, None]

    def edit(self, attention_mask, query, key):
        batch, _, query_len, _ = query.shape
        if batch != self.classes.batch_size:
            raise ProbeError(f"the knock-out's class map has {self.classes.batch_size} sequences but the model runs {batch}")
        key_len = key.shape[2]
        mask_len = attention_mask.shape[-1] if attention_mask is not None else key_len
        block = self.blocked(query_len, key_len, mask_len, query.device)
        if attention_mask is None:  # sdpa's causal fast path: spell the causal mask out
            rows = torch.arange(key_len - query_len, key_len, device=query.device)
            causal = torch.arange(mask_len, device=query.device)[None, :] <= rows[:, None]
            return causal[None, None] & ~block
        if attention_mask.dim() != 4:
            raise ProbeError(f"knock-outs edit 4-D attention masks; this model passes a {attention_mask.dim()}-D one")
        if attention_mask.dtype == torch.bool:
            return attention_mask & ~block
        floor = torch.finfo(attention_mask.dtype).min
        return torch.where(block, torch.tensor(floor, dtype=attention_mask.dtype, device=attention_mask.device), attention_mask)


class ForceTokens:
    """Logits processor that makes generate emit ``tokens[b, step]``: a teacher-forced pass through
    the model's own generate, so every family's inputs (embeddings, rotary positions) stay its own."""

    def __init__(self, tokens: torch.Tensor):
        self.tokens = tokens
        self.step = 0

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        forced = torch.full_like(scores, float("-inf"))
        forced.scatter_(1, self.tokens[:, self.step, None].to(scores.device), 0.0)
        self.step += 1
        return forced


def _token_logprobs(logits: tuple[torch.Tensor, ...], tokens: torch.Tensor) -> torch.Tensor:
    """(batch, steps) log-probabilities of ``tokens`` under generate's raw per-step logits."""
    steps = min(len(logits), tokens.shape[1])
    stacked = torch.stack(logits[:steps], dim=1).float().log_softmax(-1)
    return stacked.gather(2, tokens[:, :steps, None].to(stacked.device)).squeeze(2)


# generate options that change which token is chosen; the forced pass drops them
_SAMPLING_KEYS = ("do_sample", "temperature", "top_p", "top_k", "repetition_penalty", "min_new_tokens", "stop_strings", "tokenizer")


def knockout_effects(model, inputs: dict, gen: dict, pad_id: int, classes: PositionClasses, layers, knocked: torch.Tensor, prompt_len: int) -> list[dict]:
    """Per sample: how the knock-out changes the answer the unmasked model gives.

    The model answers once without knock-out (the reference); the reference's tokens are then
    forced through the knocked-out model. ``logprob_plain`` / ``logprob_knocked``: summed
    log-probability of the reference's tokens (up to and including EOS) under the model's raw
    next-token distribution, without and with the knock-out; ``answer_changed``: the knocked-out
    model's own answer (``knocked``, new tokens) differs from the reference.
    """
    from transformers import LogitsProcessorList

    from lmms_textdom.core.probe import output_lengths

    eos = model.generation_config.eos_token_id
    plain = model.generate(**inputs, **gen, pad_token_id=pad_id, output_logits=True, return_dict_in_generate=True)
    reference = plain.sequences[:, prompt_len:]
    plain_lp = _token_logprobs(plain.logits, reference)
    forced_gen = {k: v for k, v in gen.items() if k not in _SAMPLING_KEYS} | {"max_new_tokens": reference.shape[1], "do_sample": False}
    with KnockOut(model, layers, classes):
        forced = model.generate(
            **inputs, **forced_gen, pad_token_id=pad_id, output_logits=True, return_dict_in_generate=True,
            logits_processor=LogitsProcessorList([ForceTokens(reference)]),
        )  # fmt: skip
    knocked_lp = _token_logprobs(forced.logits, reference)
    ref_lengths = output_lengths(reference, eos, pad_id)
    own_lengths = output_lengths(knocked, eos, pad_id)
    records = []
    for b, (n, m) in enumerate(zip(ref_lengths, own_lengths)):
        if not torch.equal(forced.sequences[b, prompt_len : prompt_len + n].cpu(), reference[b, :n].cpu()):
            raise ProbeError("forcing the reference answer through the knocked-out model produced other tokens")
        records.append(
            {
                "answer_tokens": n,
                "logprob_plain": float(plain_lp[b, :n].double().sum()),
                "logprob_knocked": float(knocked_lp[b, :n].double().sum()),
                "answer_changed": not torch.equal(knocked[b, :m].cpu(), reference[b, :n].cpu()),
            }
        )
    return records
