"""Attention probe: where do the rows that produce output tokens put their attention?

The language model's attention is routed through a thin function registered in transformers'
``AttentionInterface`` that calls the model's own implementation (sdpa or eager) unchanged and,
while a probe is active, also computes the one attention row that produces the next token (the
last query row of each forward pass). That row is reduced at once to per-class sums, so memory is
O(layers x batch x classes) per generated token and no sequence x sequence matrix ever exists.

    with AttentionProbe(model, classes) as probe:
        out = model.generate(**inputs)
    stats = probe.stats(output_lengths(out[:, prompt_len:], eos_token_id, pad_token_id))
"""

from __future__ import annotations

import contextvars
import sys
from typing import Sequence

import torch
from transformers import AttentionInterface
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from lmms_textdom.core.modality import PositionClasses
from lmms_textdom.core.stats import SampleStats

_PREFIX = "textdom_"
#: Attention implementations the probe can wrap.
SUPPORTED_IMPLEMENTATIONS = ("sdpa", "eager")
_ACTIVE: contextvars.ContextVar["_Recorder | None"] = contextvars.ContextVar("lmms_textdom_probe", default=None)


class ProbeError(RuntimeError):
    """The probe cannot measure this model or these inputs as asked."""


_EAGER_BY_CLASS: dict[type, object] = {}


def _eager_forward(module: torch.nn.Module):
    """The model file's own ``eager_attention_forward`` (every transformers model file defines one)."""
    cls = type(module)
    fn = _EAGER_BY_CLASS.get(cls)
    if fn is None:
        fn = getattr(sys.modules[cls.__module__], "eager_attention_forward", None)
        if fn is None:
            raise ProbeError(f"{cls.__module__} defines no eager_attention_forward; run the model with attn_implementation='sdpa'")
        _EAGER_BY_CLASS[cls] = fn
    return fn


# ----- analysis hooks (lmms_textdom.analysis sets them on attention modules; absent = no effect) -----
#: ``module.textdom_key_observer(key)`` sees the layer's key states before attention runs.
KEY_OBSERVER = "textdom_key_observer"
#: ``module.textdom_mask_edit(attention_mask, query, key) -> attention_mask`` edits what both the
#: probe and the model's attention see (layer knock-outs).
MASK_EDIT = "textdom_mask_edit"


def _analysis_hooks(module, query, key, attention_mask):
    observe = getattr(module, KEY_OBSERVER, None)
    if observe is not None:
        observe(key)
    edit = getattr(module, MASK_EDIT, None)
    return attention_mask if edit is None else edit(attention_mask, query, key)


# ----- end of analysis hooks -----


def _make_probe_function(inner: str):
    sdpa = ALL_ATTENTION_FUNCTIONS["sdpa"]

    def probe_attention(module, query, key, value, attention_mask, *args, **kwargs):
        attention_mask = _analysis_hooks(module, query, key, attention_mask)
        recorder = _ACTIVE.get()
        if recorder is not None:
            recorder.record(module, query, key, attention_mask, kwargs)
        forward = sdpa if inner == "sdpa" else _eager_forward(module)
        return forward(module, query, key, value, attention_mask, *args, **kwargs)

    probe_attention.__name__ = f"{_PREFIX}{inner}"
    return probe_attention


def _registered_name(inner: str) -> str:
    name = _PREFIX + inner
    if name not in ALL_ATTENTION_FUNCTIONS:
        AttentionInterface.register(name, _make_probe_function(inner))
        # Without a mask function of the same name transformers builds no mask at all (padding ignored).
        AttentionMaskInterface.register(name, ALL_MASK_ATTENTION_FUNCTIONS[inner])
    return name


def _text_config_key(model) -> str | None:
    """The sub-config name of the language model (``text_config``), or None for a text-only model."""
    text_config = model.config.get_text_config()
    if text_config is model.config:
        return None
    for key in model.config.sub_configs:
        if getattr(model.config, key, None) is text_config:
            return key
    raise ProbeError(f"cannot locate the language model's sub-config in {type(model.config).__name__}")


def text_attention_implementation(model) -> str:
    """The language model's attention implementation, without the probe's prefix."""
    return model.config.get_text_config()._attn_implementation.removeprefix(_PREFIX)


def _set_text_attention(model, name: str) -> None:
    key = _text_config_key(model)
    model.set_attn_implementation({key: name} if key else name)


def install(model) -> bool:
    """Route the language model's attention through the probe function; True if this call changed it.

    Until a probe is active the function only forwards to the original implementation, so a model
    can keep it installed for its whole life.
    """
    current = model.config.get_text_config()._attn_implementation
    if current.startswith(_PREFIX):
        return False
    if current not in SUPPORTED_IMPLEMENTATIONS:
        raise ProbeError(
            f"the attention probe wraps {' or '.join(SUPPORTED_IMPLEMENTATIONS)} attention, but the language model uses "
            f"{current!r}; load it with attn_implementation='sdpa'"
        )
    _set_text_attention(model, _registered_name(current))
    return True


def uninstall(model) -> None:
    _set_text_attention(model, text_attention_implementation(model))


def language_model_layers(model) -> dict[torch.nn.Module, int]:
    """The language model's self-attention modules and their layer index (vision/audio towers excluded)."""
    decoder = model.get_decoder() if hasattr(model, "get_decoder") else model
    layers = {
        m: m.layer_idx
        for m in decoder.modules()
        if isinstance(getattr(m, "layer_idx", None), int) and hasattr(m, "num_key_value_groups")
    }
    if not layers:
        raise ProbeError(f"found no language-model attention layers in {type(model).__name__}")
    return layers


class _Recorder:
    """Per-forward-pass accumulation; one (layers, batch, classes + 1) float32 buffer per generated token."""

    def __init__(self, layer_of: dict[torch.nn.Module, int], num_layers: int, classes: PositionClasses):
        self.layer_of = layer_of
        self.num_layers = num_layers
        self.first_layer = min(layer_of.values())
        self.classes = classes
        self.num_classes = len(classes.names)
        self.prompt_len = classes.length
        self.steps: list[torch.Tensor] = []
        self.seen: set[int] = set()
        self.heads = 0
        self._one_hot: dict[torch.device, torch.Tensor] = {}
        self._buffer: torch.Tensor | None = None

    def _start_step(self, query: torch.Tensor, key: torch.Tensor) -> None:
        if not self.steps:
            batch, kv_len = key.shape[0], key.shape[2]
            if batch != self.classes.batch_size:
                raise ProbeError(
                    f"the class map has {self.classes.batch_size} sequences but the model runs {batch} "
                    "(beam search and num_return_sequences > 1 are not supported)"
                )
            if kv_len != self.prompt_len:
                raise ProbeError(
                    f"the class map covers {self.prompt_len} positions but the language model's prompt has {kv_len}; "
                    "build it from the sequence the language model sees (after placeholder expansion, pruning or replication)"
                )
            self.heads = query.shape[1]
        self._buffer = torch.zeros(self.num_layers, key.shape[0], self.num_classes + 1, dtype=torch.float32, device=query.device)
        self.steps.append(self._buffer)

    def _one_hot_on(self, device: torch.device) -> torch.Tensor:
        one_hot = self._one_hot.get(device)
        if one_hot is None:
            one_hot = self._one_hot[device] = self.classes.one_hot(device)
        return one_hot

    @torch.no_grad()
    def record(self, module, query, key, attention_mask, kwargs) -> None:
        layer = self.layer_of.get(module)
        if layer is None:
            return
        if layer == self.first_layer:
            self._start_step(query, key)
        elif self._buffer is None:
            raise ProbeError("the probe started in the middle of a forward pass")
        if len(self.steps) == 1:
            self.seen.add(layer)

        batch, heads, _, head_dim = query.shape
        kv_heads, kv_len = key.shape[1], key.shape[2]
        # Last query row, grouped by KV head so grouped-query attention needs no repeated keys.
        q = query[:, :, -1, :].float().reshape(batch, kv_heads, heads // kv_heads, 1, head_dim)
        scaling = kwargs.get("scaling")
        scores = torch.matmul(q, key.float().unsqueeze(2).transpose(-1, -2)).squeeze(3)
        scores = scores * (scaling if scaling is not None else head_dim**-0.5)
        softcap = kwargs.get("softcap")
        if softcap:
            scores = torch.tanh(scores / softcap) * softcap
        if attention_mask is not None:
            row = attention_mask[:, :, -1, :kv_len] if attention_mask.dim() == 4 else attention_mask[:, None, :kv_len]
            row = row.reshape(batch, -1, 1, kv_len) if row.shape[1] == 1 else row.reshape(batch, kv_heads, -1, kv_len)
            if row.dtype == torch.bool:
                scores = scores.masked_fill(~row, float("-inf"))
            else:
                scores = scores + row.float()
        per_position = scores.softmax(-1).sum(dim=(1, 2))  # (batch, kv_len): summed over heads
        one_hot = self._one_hot_on(per_position.device)
        per_class = torch.bmm(per_position[:, None, : self.prompt_len], one_hot).squeeze(1)
        buffer = self._buffer
        buffer[layer, :, : self.num_classes].copy_(per_class)
        buffer[layer, :, self.num_classes].copy_(per_position[:, self.prompt_len :].sum(-1))

    def stats(self, lengths: Sequence[int] | None) -> list[SampleStats]:
        if not self.steps:
            raise ProbeError("no forward pass went through the probe: was generate called inside the `with` block?")
        missing = sorted(set(range(self.num_layers)) - self.seen)
        if missing:
            raise ProbeError(
                f"language-model layers {missing} never passed through the probe (of {self.num_layers}); "
                "their attention does not use transformers' attention interface"
            )
        device = self.steps[0].device
        data = torch.stack([s.to(device) for s in self.steps]).double().cpu().numpy()  # (T, L, B, C+1)
        total = data.shape[0]
        batch = data.shape[2]
        lengths = [total] * batch if lengths is None else [int(n) for n in lengths]
        if len(lengths) != batch or any(not 0 <= n <= total for n in lengths):
            raise ValueError(f"lengths must be {batch} integers in [0, {total}], got {lengths}")
        counts = self.classes.counts()
        out = []
        for b, n in enumerate(lengths):
            summed = data[:n, :, b, :].sum(axis=0)
            out.append(
                SampleStats(
                    classes=self.classes.names,
                    counts=counts[b],
                    mass=summed[:, : self.num_classes],
                    generated=summed[:, self.num_classes],
                    rows=n,
                    heads=self.heads,
                )
            )
        return out


class AttentionProbe:
    """Context manager that measures every ``generate`` / forward call made inside it (one batch)."""

    def __init__(self, model, classes: PositionClasses):
        self.model = model
        self.classes = classes
        self._layer_of = language_model_layers(model)
        self._num_layers = model.config.get_text_config().num_hidden_layers
        self._recorder: _Recorder | None = None
        self._installed_here = False
        self._token = None

    def __enter__(self) -> "AttentionProbe":
        if _ACTIVE.get() is not None:
            raise ProbeError("another attention probe is already active in this context")
        self._installed_here = install(self.model)
        self._recorder = _Recorder(self._layer_of, self._num_layers, self.classes)
        self._token = _ACTIVE.set(self._recorder)
        return self

    def __exit__(self, *exc) -> None:
        _ACTIVE.reset(self._token)
        if self._installed_here:
            uninstall(self.model)

    @property
    def steps(self) -> int:
        """Forward passes recorded (= tokens generated by the longest sequence)."""
        return len(self._recorder.steps) if self._recorder else 0

    def stats(self, lengths: Sequence[int] | None = None) -> list[SampleStats]:
        """Per-sample stats; ``lengths[b]`` = output rows of sample b (default: every recorded step)."""
        if self._recorder is None:
            raise ProbeError("the probe has not been entered")
        return self._recorder.stats(lengths)


def output_lengths(generated: torch.Tensor, eos_token_id: int | Sequence[int] | None, pad_token_id: int | None) -> list[int]:
    """Output rows per sample of a batched ``generate``: tokens up to and including the first EOS.

    A sequence that stopped for another reason (a stop string) is followed by ``pad_token_id``,
    which is not counted unless it is also an EOS token.
    """
    eos = set() if eos_token_id is None else ({eos_token_id} if isinstance(eos_token_id, int) else set(eos_token_id))
    lengths = []
    for row in generated.tolist():
        n = len(row)
        for i, token in enumerate(row):
            if token in eos:
                n = i + 1
                break
            if token == pad_token_id:
                n = i
                break
        lengths.append(n)
    return lengths
