"""Attention probe: where do the rows that produce output tokens put their attention?

The language model's attention is routed through a thin function registered in transformers'
``AttentionInterface`` that calls the implementation the model was loaded with (sdpa, eager,
flash attention, flex attention or any registered function) unchanged and, while a probe is
active, keeps what it needs of the one attention row that produces the next token (the last query
row of each forward pass).

Two paths compute that row's softmax, exactly the same way:

- **deferred** (every layer whose KV cache keeps every key: transformers' dynamic and static
  caches without sliding windows or offloading): per layer and step only the last query row is
  copied into a preallocated buffer; every ``FLUSH_STEPS`` steps, and when generate is done, one
  batched pass per layer scores the stashed rows against the keys the cache holds, with each
  row's own mask. This keeps the per-token cost at one small copy per layer.
- **inline** (sliding windows, offloaded or quantized caches, no cache): the row is scored against
  the keys of the current call at once, since later calls no longer hold them.

- **teacher-forced** (``answer_rows=T``, the measure route): one forward pass over the prompt and
  the answer's first T - 1 tokens holds every row generate would have produced, by causality: the
  query rows at the last prompt position and at each answer token. Per layer those T rows are scored
  at once against that call's keys, each with its causal limit and its padding mask, in chunks of
  rows within ``PASS_BUDGET_BYTES``.

Either way each row is reduced to per-class sums, one (layers, batch, classes + 1) float32 record
per generated token, kept per row until ``stats`` sums them (and bins them over the answer,
``core/stepwise.py``); with ``attention_maps=True`` the same rows are also reduced per non-text
position (``core/position_maps.py``). No sequence x sequence matrix exists.

    with AttentionProbe(model, classes) as probe:
        out = model.generate(**inputs)
    stats = probe.stats(output_lengths(out[:, prompt_len:], eos_token_id, pad_token_id))
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import sys
import weakref
from dataclasses import dataclass, replace
from typing import Sequence

import torch
from torch.compiler import is_compiling
from transformers import AttentionInterface
from transformers.cache_utils import Cache, DynamicLayer, StaticLayer
from transformers.generation.stopping_criteria import StopStringCriteria
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from lmms_textdom.core.attention_maps import AttentionMaps
from lmms_textdom.core.modality import PositionClasses
from lmms_textdom.core.position_maps import PositionMaps
from lmms_textdom.core.metrics import layer_groups
from lmms_textdom.core.segments import SegmentRows, Segments
from lmms_textdom.core.stats import SampleStats
from lmms_textdom.core.stepwise import GENERATED, StepMasses

try:  # flex attention hands over a BlockMask instead of a tensor
    from torch.nn.attention.flex_attention import BlockMask
except ImportError:  # pragma: no cover - torch without flex attention
    BlockMask = ()

_PREFIX = "textdom_"
_ACTIVE: contextvars.ContextVar["_Recorder | None"] = contextvars.ContextVar("lmms_textdom_probe", default=None)
#: Steps whose query rows are stashed before one batched pass per layer scores them.
FLUSH_STEPS = 32
#: Float32 scratch memory one batched pass may use (scores and upcast keys); larger passes are chunked.
PASS_BUDGET_BYTES = 256 * 2**20
#: On a CPU, blocks of a pass stay within this, about a core's L2 cache: the scores are read three
#: times, and a block that spills runs several times slower on a busy machine (32 rows x 4k keys: 4x;
#: quiet, blocks cost up to 20 % more). GPUs take a pass in as few blocks as fit.
CPU_BLOCK_BYTES = 2**20
#: Cache layers that hold every key of the sequence until generate returns (deferred path).
_FULL_KEY_CACHE_LAYERS = (DynamicLayer, StaticLayer)
PATH_DEFERRED, PATH_INLINE, PATH_MIXED, PATH_FORCED = "deferred", "inline", "mixed", "teacher_forced"


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
#: ``module.textdom_score_edit(scores, rows, first_key) -> scores`` edits the layer's pre-softmax scores
#: (mitigation switches): the layer's attention is then computed by ``core/scored_attention.py``, and
#: the probe applies the same edit to the rows it scores.
SCORE_EDIT = "textdom_score_edit"


def _analysis_hooks(module, query, key, attention_mask):
    # The module's own attributes: getattr on an nn.Module raises and catches an exception for a missing
    # one, which costs more per layer than the probe's stash.
    hooks = module.__dict__
    observe = hooks.get(KEY_OBSERVER)
    if observe is not None:
        observe(key)
    edit = hooks.get(MASK_EDIT)
    return attention_mask if edit is None else edit(attention_mask, query, key)


# ----- end of analysis hooks -----


# ----- compiled decoding (transformers' static cache with torch.compile) -----
#: Set on an attention module while a probe is active: ``(rows, steps, advances)``. Inside a compiled
#: graph the probe function copies the last query row into ``rows[steps - 1]`` (one tensor op, no Python
#: state for dynamo to specialize on); the layers share ``steps``, which the first of them advances.
#: ``rows`` is None where a layer cannot be recorded there: its own ``steps`` then only tells the probe
#: that compiled steps ran, and it refuses.
_COMPILED_STASH = "textdom_compiled_stash"


def _stash_in_graph(module, query: torch.Tensor) -> None:
    stash = getattr(module, _COMPILED_STASH, None)
    if stash is not None:
        rows, steps, advances = stash
        if advances:
            steps.add_(1)
        if rows is not None:  # steps beyond the buffer overwrite its last row (and the probe refuses)
            rows.index_copy_(0, (steps - 1).clamp(max=rows.shape[0] - 1), query[:, :, -1:].permute(2, 0, 1, 3))


def _compiled_as_a_whole(model) -> bool:
    """Whether the model's (or its language model's) whole forward is compiled, prompt pass included."""
    for module in (model, _decoder(model)):
        if getattr(module, "_compiled_call_impl", None) is not None:  # Module.compile()
            return True
        if hasattr(module.forward, "_torchdynamo_orig_callable"):  # module.forward = torch.compile(module.forward)
            return True
    return False


def _decoding_mask(prompt_row, prompt_len: int, width: int) -> torch.Tensor | None:
    """The mask of a decoding step after a prompt whose last row's mask is ``prompt_row``: the prompt's
    keys as that row saw them, every later key visible (each row's own limit comes from its position)."""
    if prompt_row is None:
        return None
    bias = _row_bias(prompt_row, prompt_len)  # (batch, 1 or heads, prompt_len)
    return torch.nn.functional.pad(bias, (0, width - prompt_len))[:, :, None, :]


# ----- end of compiled decoding -----


def _make_probe_function(inner: str):
    name = _PREFIX + inner
    reads_own_name = "flash" in inner

    def probe_attention(module, query, key, value, attention_mask, *args, **kwargs):
        attention_mask = _analysis_hooks(module, query, key, attention_mask)
        if is_compiling():  # traced into a compiled graph: tensor ops only, no Python-side state
            _stash_in_graph(module, query)
        else:
            recorder = _ACTIVE.get()
            if recorder is not None:
                recorder.record(module, query, key, attention_mask, kwargs)
        forward = _eager_forward(module) if inner == "eager" else ALL_ATTENTION_FUNCTIONS[inner]

        if SCORE_EDIT in module.__dict__:  # a layer with edited scores: its attention is computed here
            from lmms_textdom.core.scored_attention import scored_attention

            return scored_attention(module, query, key, value, attention_mask, module.__dict__[SCORE_EDIT], *args, **kwargs)
        if not reads_own_name:
            return forward(module, query, key, value, attention_mask, *args, **kwargs)
        # Flash attention picks its kernel by the config's implementation name: show it its own
        # (object.__setattr__: the config's validating setter costs more than the probe itself).
        config = module.config
        object.__setattr__(config, "_attn_implementation_internal", inner)
        try:
            return forward(module, query, key, value, attention_mask, *args, **kwargs)
        finally:
            object.__setattr__(config, "_attn_implementation_internal", name)

    probe_attention.__name__ = name
    return probe_attention


def _registered_name(inner: str) -> str:
    name = _PREFIX + inner
    if name not in ALL_ATTENTION_FUNCTIONS:
        AttentionInterface.register(name, _make_probe_function(inner))
        # Without a mask function of the same name transformers builds no mask at all (padding
        # ignored); a function registered without one keeps running without one, as unprobed.
        if inner in ALL_MASK_ATTENTION_FUNCTIONS._global_mapping:
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


def check_attention_implementation(name: str) -> None:
    """Raise a ``ProbeError`` unless the probe can wrap attention implementation ``name``."""
    if name.startswith("paged|"):
        raise ProbeError(f"the attention probe does not measure paged attention ({name!r}, continuous batching); use 'sdpa'")
    if name != "eager" and name not in ALL_ATTENTION_FUNCTIONS:
        raise ProbeError(
            f"attention implementation {name!r} is not registered in transformers' AttentionInterface; register it "
            "(AttentionInterface.register) or load the model with attn_implementation='sdpa'"
        )


def install(model) -> bool:
    """Route the language model's attention through the probe function; True if this call changed it.

    Until a probe is active the function only forwards to the original implementation, so a model
    can keep it installed for its whole life.
    """
    current = model.config.get_text_config()._attn_implementation
    if current.startswith(_PREFIX):
        return False
    check_attention_implementation(current)
    _set_text_attention(model, _registered_name(current))
    return True


def uninstall(model) -> None:
    _set_text_attention(model, text_attention_implementation(model))


def _decoder(model) -> torch.nn.Module:
    return model.get_decoder() if hasattr(model, "get_decoder") else model


_LAYERS_OF: "weakref.WeakKeyDictionary[torch.nn.Module, dict[torch.nn.Module, int]]" = weakref.WeakKeyDictionary()


def language_model_layers(model) -> dict[torch.nn.Module, int]:
    """The language model's self-attention modules and their layer index (vision/audio towers excluded).

    Found once per model (a walk over every module costs milliseconds, per probe); read-only.
    """
    layers = _LAYERS_OF.get(model)
    if layers is not None:
        return layers
    layers = {
        m: m.layer_idx
        for m in _decoder(model).modules()
        if isinstance(getattr(m, "layer_idx", None), int) and hasattr(m, "num_key_value_groups")
    }
    if not layers:
        raise ProbeError(f"found no language-model attention layers in {type(model).__name__}")
    _LAYERS_OF[model] = layers
    return layers


def _last_row(mask, query_len: int, batch: int, kv_len: int):
    """What a row's mask needs of ``mask`` beyond this call: the last query row of a prompt's mask
    (never the whole prompt x prompt mask), a flex BlockMask evaluated on that row, else ``mask`` itself."""
    if BlockMask and isinstance(mask, BlockMask):
        device = mask.kv_num_blocks.device
        last = torch.full((), mask.seq_lengths[0] - 1, device=device)
        allowed = mask.mask_mod(
            torch.arange(batch, device=device)[:, None], torch.zeros((), dtype=torch.long, device=device), last,
            torch.arange(kv_len, device=device)[None, :],
        )  # fmt: skip
        return allowed.expand(batch, kv_len)[:, None, None, :]
    if isinstance(mask, torch.Tensor) and mask.dim() == 4 and query_len > 1:
        return mask[:, :, -1:, :].clone()
    return mask


def _row_bias(mask, kv_len: int) -> torch.Tensor | None:
    """Additive float32 bias (batch, 1 or heads, kv_len) of the last query row; None = every key."""
    if mask is None:
        return None
    row = mask[:, :, -1, :kv_len] if mask.dim() == 4 else mask[:, None, :kv_len]  # 2-D: flash attention's padding mask
    if row.is_floating_point():
        return row.float()
    return torch.zeros(row.shape, dtype=torch.float32, device=row.device).masked_fill_(row == 0, float("-inf"))


def _rows_bias(masks: list, kv_lens: list[int], width: int, batch: int, device) -> torch.Tensor | None:
    """(batch or 1, 1 or heads, rows, columns) additive bias of several rows for the last ``columns``
    of ``width`` keys: each row's own mask, and -inf on keys beyond that row's position.
    None when no key needs a bias (no padding, and every row sees all ``width`` keys)."""
    if all(m is None for m in masks):  # no padding: each row sees every key up to its own position
        first = min(kv_lens)  # columns before it are visible to every row: a bias of 0, left out
        if first >= width:  # e.g. a single row (a flush of one step, or one answer token)
            return None
        limit = torch.tensor(kv_lens, device=device)[:, None]
        visible = torch.arange(first, width, device=device)[None, :] < limit
        bias = torch.zeros(visible.shape, dtype=torch.float32, device=device).masked_fill_(~visible, float("-inf"))
        return bias[None, None]
    biases = [_row_bias(m, n) for m, n in zip(masks, kv_lens)]
    heads = max(1 if b is None else b.shape[1] for b in biases)
    out = torch.full((batch, heads, len(masks), width), float("-inf"), dtype=torch.float32, device=device)
    for i, (bias, n) in enumerate(zip(biases, kv_lens)):
        out[:, :, i, :n] = 0.0 if bias is None else bias
    return out


def _forced_bias(mask, first: int, rows: int, width: int, window: int | None, device) -> torch.Tensor:
    """(batch or 1, 1 or heads, rows, width) additive float32 bias of the query positions first ..
    first + rows - 1 of one forward pass against its keys 0 .. width - 1: the model's own 4-D mask rows
    where it has one (causal limit, padding and any window already in them), else causal limits (and
    ``window``) plus a flash-attention 2-D padding mask or a flex BlockMask evaluated on those rows."""
    if isinstance(mask, torch.Tensor) and mask.dim() == 4:
        part = mask[:, :, first : first + rows, :width]
        if part.is_floating_point():
            return part.float()
        return torch.zeros(part.shape, dtype=torch.float32, device=part.device).masked_fill_(~part.bool(), float("-inf"))
    position = torch.arange(first, first + rows, device=device)[:, None]
    column = torch.arange(width, device=device)[None, :]
    if BlockMask and isinstance(mask, BlockMask):
        batch = mask.kv_num_blocks.shape[0]
        allowed = mask.mask_mod(
            torch.arange(batch, device=device)[:, None, None], torch.zeros((), dtype=torch.long, device=device),
            position[None], column[None],
        )  # fmt: skip
        allowed = allowed.expand(batch, rows, width)[:, None]
    else:
        allowed = (column <= position)[None, None]
        if window is not None:
            allowed = allowed & (column > position - window)[None, None]
        if isinstance(mask, torch.Tensor):  # 2-D: flash attention's (batch, keys) padding mask
            allowed = allowed & mask[:, None, None, :width].bool()
    return torch.zeros(allowed.shape, dtype=torch.float32, device=device).masked_fill_(~allowed, float("-inf"))


def forced_row_chunk(batch: int, heads: int, kv_heads: int, head_dim: int, width: int) -> int:
    """Query rows per teacher-forced pass such that one KV head's float32 scores (``_softmax_rows``) and
    the rows' bias each stay within ``PASS_BUDGET_BYTES`` (at least one row)."""
    group = heads // kv_heads
    by_scores = (PASS_BUDGET_BYTES // (4 * batch * width) - head_dim) // group
    by_bias = PASS_BUDGET_BYTES // (4 * batch * heads * width)
    return max(1, min(by_scores, by_bias))


def _softmax_rows(
    query: torch.Tensor, key: torch.Tensor, bias: torch.Tensor, scaling: float, softcap: float | None,
    edit=None, positions: torch.Tensor | None = None, first_key: int = 0,
) -> torch.Tensor:  # fmt: skip
    """Attention probabilities of query rows, summed over heads: (batch, rows, keys) float32.

    query (rows, batch, heads, head_dim), key (batch, kv_heads, keys, head_dim) of positions first_key,
    first_key + 1, ..., bias as ``_rows_bias`` (None: every key visible).
    ``edit``: a layer's score edit (``SCORE_EDIT``), applied before the bias as the layer applies it;
    ``positions`` are then the rows' absolute positions.
    Grouped by KV head, so grouped-query attention repeats no keys; in blocks of KV heads (at least
    one) and, where one head's rows are too many, of rows, within ``PASS_BUDGET_BYTES`` of scratch
    (``CPU_BLOCK_BYTES`` on a CPU).
    """
    rows, batch, heads, head_dim = query.shape
    kv_heads, width = key.shape[1], key.shape[2]
    group = heads // kv_heads
    # (batch, kv_heads, group, rows, head_dim): one plain batched matmul per block of KV heads
    # scaled here: the rows are far smaller than their scores
    q = query.permute(1, 2, 0, 3).reshape(batch, kv_heads, group, rows, head_dim).float() * scaling
    if bias is not None:
        columns = bias.shape[-1]
        bias = bias.reshape(bias.shape[0], -1, 1, rows, columns) if bias.shape[1] == 1 else bias.reshape(batch, kv_heads, group, rows, columns)
    budget = CPU_BLOCK_BYTES if key.device.type == "cpu" else PASS_BUDGET_BYTES
    per_head = 4 * batch * width * (head_dim + group * rows)  # a head's upcast keys and scores
    head_chunk = max(1, min(kv_heads, budget // per_head))
    row_chunk = rows if per_head <= budget else max(1, (budget // (4 * batch * width) - head_dim) // group)
    out = None
    for h in range(0, kv_heads, head_chunk):
        k = key[:, h : h + head_chunk].float().transpose(-1, -2)
        for r in range(0, rows, row_chunk):
            block = q[:, h : h + head_chunk] if row_chunk == rows else q[:, h : h + head_chunk, :, r : r + row_chunk]
            count = block.shape[3]
            scores = torch.matmul(block.reshape(batch, -1, group * count, head_dim), k).view(batch, -1, group, count, width)
            if softcap:
                scores = torch.tanh(scores / softcap) * softcap
            if edit is not None:
                scores = edit(scores, positions if row_chunk == rows else positions[r : r + count], first_key)
            if bias is not None:  # it covers the last columns only
                part = bias if row_chunk == rows else bias[..., r : r + count, :]
                scores[..., width - columns :] += part if part.shape[1] == 1 else part[:, h : h + head_chunk]
            summed = scores.softmax(-1).sum(dim=(1, 2))
            if row_chunk == rows:
                out = summed if out is None else out.add_(summed)
                continue
            if out is None:
                out = torch.zeros(batch, rows, width, device=summed.device)
            out[:, r : r + count] += summed
    return out


@dataclass
class _Armed:
    """What a layer was armed with for compiled decoding at a call's prompt pass."""

    module: torch.nn.Module
    rows: torch.Tensor | None  # (positions beyond the prompt, batch, heads, head_dim), None = not recordable
    steps: torch.Tensor  # (1,) compiled decoding steps so far
    key: torch.Tensor  # the static cache's key tensor: written in place, so it holds every step's keys after
    prompt_len: int
    prompt_row: object  # the mask of the prompt's last row (``_last_row``)


class _Recorder:
    """Per-step records (steps, layers, batch, classes + 1 + text sub-classes) float32, filled inline or by deferred passes."""

    def __init__(
        self, layer_of: dict[torch.nn.Module, int], num_layers: int, classes: PositionClasses, answer_rows: int | None = None,
        maps: PositionMaps | None = None,
    ):  # fmt: skip
        self.layer_of = layer_of
        self.maps = maps  # per-position sums of the same rows (attention maps), when asked
        self.answer_rows = answer_rows  # teacher-forced: rows of one forward pass over prompt + answer
        self.num_layers = num_layers
        self.first_layer = min(layer_of.values())
        self.classes = classes
        self.num_classes = len(classes.names)
        self.num_subclasses = len(classes.subclasses)
        self.prompt_len = classes.length
        self.heads = 0
        self._edits: list = [None] * num_layers  # each layer's SCORE_EDIT, as set when the first pass starts
        self.cache = None  # the KV cache of the current generate call (seen by a pre-hook on the decoder)
        self.steps = 0
        self._call_start = 0  # first step of the current generate call
        self._rows: torch.Tensor | None = None  # (capacity, layers, batch, classes + 1)
        self._one_hot: dict[tuple, torch.Tensor] = {}
        # per layer, decided when first seen: True deferred, False inline (reason in inline_layers)
        self.deferred: list[bool | None] = [None] * num_layers
        self.inline_layers: dict[int, str] = {}
        self._scaling: list[float] = [1.0] * num_layers
        self._softcap: list[float | None] = [None] * num_layers
        # deferred state: per layer the query rows of the steps since ``_pending_from`` (decoding steps'
        # own query tensors, kept rather than copied: attention functions do not write into their inputs),
        # each layer's latest keys, each step's mask
        self._pending: list[list[torch.Tensor | None]] = [[None] * FLUSH_STEPS for _ in range(num_layers)]
        self._keys: list[torch.Tensor | None] = [None] * num_layers
        self._pending_from = 0
        self._kv_lens: list[int] = []
        self._masks: list = []
        self._step_mask_source = self._NO_MASK_YET = object()
        self._mask_overrides: dict[tuple[int, int], object] = {}
        # compiled decoding: per layer why it cannot be recorded inside a compiled graph (None = it can),
        # and what each layer was armed with at the current call's prompt pass (``_arm``)
        self._not_in_graph: list[str | None] = [None] * num_layers
        self._last_step: list[int] = [-1] * num_layers  # the last step each layer recorded
        self.max_new_tokens: int | None = None  # bounds the compiled-decoding buffers (AttentionProbe)
        self._armed: dict[int, _Armed] = {}

    # ----- during generate ------------------------------------------------------------------------

    def _start_step(self, query: torch.Tensor, key: torch.Tensor) -> None:
        batch, query_len = query.shape[0], query.shape[2]
        if not self.steps:
            if batch != self.classes.batch_size:
                raise ProbeError(
                    f"the class map has {self.classes.batch_size} sequences but the model runs {batch} "
                    "(beam search and num_return_sequences > 1 are not supported)"
                )
            if query_len != self.prompt_len:
                raise ProbeError(
                    f"the class map covers {self.prompt_len} positions but the language model's prompt has {query_len}; "
                    "build it from the sequence the language model sees (after placeholder expansion, pruning or replication)"
                )
            self.heads = query.shape[1]
            self._take_edits()
            # columns: classes, generated tokens, then the text sub-classes (already inside the text column)
            width = self.num_classes + 1 + self.num_subclasses
            self._rows = torch.zeros(2 * FLUSH_STEPS, self.num_layers, batch, width, device=query.device)
        elif query_len > 1:  # another prompt (a second generate call): earlier rows attend other keys
            self._score_compiled(next_keys=key)
            self.flush()
            self._call_start = self.steps
        if self.steps - self._pending_from == FLUSH_STEPS:
            self.flush()
        if self.steps == self._rows.shape[0]:
            self._rows = torch.cat([self._rows, torch.zeros_like(self._rows)])
        # Keys up to this row's own position: a static cache hands over its whole capacity, unwritten
        # and later positions included, and a row without a mask (causal) sees none of those.
        self._kv_lens.append(min(key.shape[2], self.prompt_len + self.steps - self._call_start))
        self.steps += 1
        self._step_mask_source = self._NO_MASK_YET

    def _decide(self, module, layer: int, query: torch.Tensor, key: torch.Tensor, kwargs) -> bool:
        scaling = kwargs.get("scaling")
        self._scaling[layer] = scaling if scaling is not None else query.shape[-1] ** -0.5
        self._softcap[layer] = kwargs.get("softcap")
        cache = self.cache
        cache_layers = getattr(cache, "layers", None)
        if kwargs.get("sliding_window") is not None:
            reason = "sliding-window attention"
        elif cache is None:
            reason = "no KV cache"
        elif getattr(cache, "offloading", False):
            reason = "offloaded KV cache"
        elif cache_layers is None or layer >= len(cache_layers) or type(cache_layers[layer]) not in _FULL_KEY_CACHE_LAYERS:
            kind = type(cache_layers[layer]).__name__ if cache_layers and layer < len(cache_layers) else type(cache).__name__
            reason = f"{kind} does not keep every key"
        else:
            reason = None
        if reason is not None:
            self.inline_layers[layer] = reason
        self.deferred[layer] = reason is None
        if reason is None and type(cache_layers[layer]) is not StaticLayer:
            reason = f"{type(cache_layers[layer]).__name__} (only a static cache is decoded inside a compiled graph)"
        elif reason is None and cache_layers[layer].keys is not key:
            # the finished cache is read after decoding; keys computed anew each pass are gone by then
            reason = "its keys are computed from the cache anew in every pass (latent attention), not read from it"
        elif reason is None and (KEY_OBSERVER in module.__dict__ or MASK_EDIT in module.__dict__):
            reason = "a knock-out or key sampler is attached (they run in eager decoding only)"
        self._not_in_graph[layer] = reason
        return self.deferred[layer]

    def record(self, module, query, key, attention_mask, kwargs) -> None:
        layer = self.layer_of.get(module)
        if layer is None:
            return
        if torch.is_grad_enabled():  # generate runs without; a no_grad context per call would cost more than the stash
            with torch.no_grad():
                return self.record(module, query, key, attention_mask, kwargs)
        if self.answer_rows is not None:
            if layer == self.first_layer:
                self._start_forced(query)
            elif not self.steps:
                raise ProbeError("the probe started in the middle of a forward pass")
            return self._record_forced(layer, query, key, attention_mask, kwargs)
        if layer == self.first_layer:
            self._start_step(query, key)
        elif not self.steps:
            raise ProbeError("the probe started in the middle of a forward pass")
        deferred = self.deferred[layer]
        if deferred is None:
            deferred = self._decide(module, layer, query, key, kwargs)
        step = self.steps - 1
        if self._last_step[layer] == step:  # its step did not start: the first layer ran elsewhere (a compiled graph)
            raise ProbeError(f"layer {layer} passed through the probe twice in one step: part of the forward pass ran inside a compiled graph")
        self._last_step[layer] = step
        if step == self._call_start:  # the prompt's pass: decoding may go on inside a compiled graph
            self._arm(module, layer, query, key, attention_mask)
        if not deferred:
            row = _last_row(attention_mask, query.shape[2], query.shape[0], key.shape[2])
            bias = None if row is None else _rows_bias([row], [key.shape[2]], key.shape[2], query.shape[0], query.device)
            # A sliding-window cache hands over the latest keys only: they end at this row's position.
            first_position = max(0, self.prompt_len + step - self._call_start - key.shape[2])
            self._store(step, layer, query[:, :, -1:].permute(2, 0, 1, 3), key, bias, first_position)
            return
        # a prompt's last row is copied: its query tensor holds every prompt position
        self._pending[layer][step - self._pending_from] = query if query.shape[2] == 1 else query[:, :, -1:].clone()
        self._keys[layer] = key  # the cache's own tensor: no copy
        if attention_mask is not self._step_mask_source:
            row = _last_row(attention_mask, query.shape[2], query.shape[0], key.shape[2])
            if self._step_mask_source is self._NO_MASK_YET:
                self._step_mask_source = attention_mask
                self._masks.append(row)
            else:  # a layer with a mask of its own
                self._mask_overrides[(layer, step)] = row

    def _start_forced(self, query: torch.Tensor) -> None:
        batch, query_len = query.shape[0], query.shape[2]
        if self.steps:
            raise ProbeError("a teacher-forced probe measures one forward pass over prompt + answer; this is a second one")
        if batch != self.classes.batch_size:
            raise ProbeError(f"the class map has {self.classes.batch_size} sequences but the model runs {batch}")
        expected = self.prompt_len + self.answer_rows - 1
        if query_len != expected:
            raise ProbeError(
                f"the forward pass holds {query_len} positions, but {self.answer_rows} answer rows after the class map's "
                f"{self.prompt_len} prompt positions need {expected}: the prompt and every answer token but the last"
            )
        self.heads = query.shape[1]
        self._take_edits()
        width = self.num_classes + 1 + self.num_subclasses
        self._rows = torch.zeros(self.answer_rows, self.num_layers, batch, width, device=query.device)
        self.steps = self._pending_from = self.answer_rows  # nothing left for flush

    def _record_forced(self, layer: int, query, key, attention_mask, kwargs) -> None:
        """Rows P - 1 .. P + T - 2 (P prompt positions, T answer rows) of this layer, scored in chunks of rows."""
        scaling = kwargs.get("scaling")
        self._scaling[layer] = scaling if scaling is not None else query.shape[-1] ** -0.5
        self._softcap[layer] = kwargs.get("softcap")
        self.deferred[layer] = True  # seen; the path is teacher-forced
        first = self.prompt_len - 1
        batch, heads, _, head_dim = query.shape
        chunk = forced_row_chunk(batch, heads, key.shape[1], head_dim, key.shape[2])
        for start in range(0, self.answer_rows, chunk):
            rows = min(chunk, self.answer_rows - start)
            width = first + start + rows  # keys beyond the chunk's last row are masked for all its rows
            bias = _forced_bias(attention_mask, first + start, rows, width, kwargs.get("sliding_window"), query.device)
            queries = query[:, :, first + start : first + start + rows].permute(2, 0, 1, 3)
            self._store(start, layer, queries, key[:, :, :width], bias)

    def _one_hot_to(self, first: int, width: int, device) -> torch.Tensor:
        """(batch, width, classes + 1 + subclasses) for positions first, first + 1, ...: the prompt's
        classes, one column for generated positions, then the prompt's text sub-classes."""
        key = (first, width, device)
        one_hot = self._one_hot.get(key)
        if one_hot is None:
            if len(self._one_hot) > 4:  # widths grow step by step; keep only the latest few
                self._one_hot.clear()
            prompt = self.classes.one_hot(device)[:, first : first + width]
            subclasses = self.classes.subclass_indicator(device)[:, first : first + width]
            one_hot = torch.zeros(prompt.shape[0], width, self.num_classes + 1 + self.num_subclasses, device=device)
            one_hot[:, : prompt.shape[1], : self.num_classes] = prompt
            one_hot[:, prompt.shape[1] :, self.num_classes] = 1.0
            one_hot[:, : prompt.shape[1], self.num_classes + 1 :] = subclasses
            # laid out (batch, columns, width) in memory: a matmul with so few columns runs ~4x faster on a CPU
            one_hot = self._one_hot[key] = one_hot.transpose(1, 2).contiguous().transpose(1, 2)
        return one_hot

    def _store(self, start: int, layer: int, queries, key, bias, first_position: int = 0) -> None:
        """Per-class sums of ``queries`` (rows, batch, heads, head_dim) into the records of steps start,
        start + 1, ...; ``key`` holds the keys of positions first_position, first_position + 1, ..."""
        edit = self._edits[layer]
        positions = None if edit is None else self._row_positions(start, queries.shape[0], key.device)
        per_position = _softmax_rows(queries, key, bias, self._scaling[layer], self._softcap[layer], edit, positions, first_position)
        one_hot = self._one_hot_to(first_position, key.shape[2], key.device)
        per_class = torch.bmm(per_position, one_hot)  # (batch, rows, classes + 1)
        self._rows[start : start + queries.shape[0], layer].copy_(per_class.transpose(0, 1))
        if self.maps is not None:
            self.maps.add(start, layer, per_position, first_position)

    # ----- score edits (``SCORE_EDIT``): the layers that carry one are scored as edited -----

    def _take_edits(self) -> None:
        for module, layer in self.layer_of.items():
            self._edits[layer] = module.__dict__.get(SCORE_EDIT)

    def _row_positions(self, start: int, count: int, device) -> torch.Tensor:
        """Absolute positions of the rows of steps start .. start + count - 1 (what a score edit reads)."""
        # a step's row is the query at position P - 1 + (step - first step of its generate call)
        first = self.prompt_len - 1 - self._call_start + start
        return torch.arange(first, first + count, device=device)

    @torch.no_grad()
    def flush(self) -> None:
        """Score the stashed rows of every deferred layer: one batched pass per layer."""
        start, end = self._pending_from, self.steps
        if end == start:
            return
        shared: dict[int, torch.Tensor | None] = {}  # the bias the layers share, per key width
        for layer, deferred in enumerate(self.deferred):
            if not deferred:
                continue
            key = self._keys[layer]
            masks = self._masks
            if self._mask_overrides:
                masks = [self._mask_overrides.pop((layer, s), m) for s, m in zip(range(start, end), self._masks)]
            if all(a is b for a, b in zip(masks, self._masks)):
                width = key.shape[2]
                if width not in shared:
                    shared[width] = _rows_bias(self._masks, self._kv_lens, width, key.shape[0], key.device)
                bias = shared[width]
            else:
                bias = _rows_bias(masks, self._kv_lens, key.shape[2], key.shape[0], key.device)
            queries = torch.cat(self._pending[layer][: end - start], dim=2)  # (batch, heads, rows, head_dim)
            self._store(start, layer, queries.permute(2, 0, 1, 3), key, bias)
        self._pending_from = end
        self._kv_lens, self._masks = [], []

    # ----- compiled decoding (see _COMPILED_STASH) ----------------------------------------------------

    def _arm(self, module, layer: int, query, key, attention_mask) -> None:
        """Prepare ``module`` for decoding steps inside a compiled graph (see ``_COMPILED_STASH``).

        Rows go to a preallocated buffer with room for every position the static cache has beyond the
        prompt, or for ``max_new_tokens``; layers that cannot be recorded there get a step counter only.
        """
        batch, heads, prompt_len, head_dim = query.shape
        room = key.shape[2] - prompt_len
        if self.max_new_tokens is not None:  # the last token is never fed back: one row to spare
            room = min(room, self.max_new_tokens)
        if self._not_in_graph[layer] is None and room > 0:
            rows = query.new_empty(room, batch, heads, head_dim)  # untouched unless decoding runs compiled
            torch._dynamo.mark_static_address(rows)  # a fixed address: CUDA graphs keep capturing
            prompt_row = _last_row(attention_mask, prompt_len, batch, key.shape[2])
            shared = next((a.steps for a in self._armed.values() if a.rows is not None), None)
            steps, advances = (self._new_counter(query.device), True) if shared is None else (shared, False)
        else:
            rows = prompt_row = None
            steps, advances = self._new_counter(query.device), True
        setattr(module, _COMPILED_STASH, (rows, steps, advances))
        self._armed[layer] = _Armed(module, rows, steps, key, prompt_len, prompt_row)

    @staticmethod
    def _new_counter(device) -> torch.Tensor:
        steps = torch.zeros(1, dtype=torch.long, device=device)
        torch._dynamo.mark_static_address(steps)
        return steps

    def disarm(self) -> None:
        for armed in self._armed.values():
            if _COMPILED_STASH in armed.module.__dict__:
                delattr(armed.module, _COMPILED_STASH)

    def _score_compiled(self, next_keys=None) -> None:
        """Score the rows that the current call's decoding steps stashed inside a compiled graph, then disarm.

        ``next_keys``: the first layer's keys of the next call's prompt pass, which must not be this
        call's cache (its keys are overwritten already).
        """
        armed = self._armed
        if not armed:
            return
        self.disarm()
        self._armed = {}
        counters = {id(a.steps): a.steps for a in armed.values()}
        values = dict(zip(counters, torch.cat(list(counters.values())).tolist()))
        counts = {layer: values[id(a.steps)] for layer, a in armed.items()}
        compiled = max(counts.values())
        if not compiled:
            return
        unrecorded = {layer: self._not_in_graph[layer] or "no room in its cache" for layer, a in armed.items() if a.rows is None}
        if unrecorded:
            raise ProbeError(
                f"{compiled} decoding steps ran inside a compiled graph (torch.compile with a static cache), where the "
                f"probe cannot record layers {sorted(unrecorded)} ({'; '.join(sorted(set(unrecorded.values())))}); "
                "generate without compilation (model_arg compile=false, or generation_config.disable_compile=True)"
            )
        if set(counts.values()) != {compiled} or self.steps - self._call_start != 1:
            raise ProbeError(
                f"a generate call ran some decoding steps inside a compiled graph and others outside it (layers saw "
                f"{sorted(set(counts.values()))} compiled steps after {self.steps - self._call_start} recorded ones); "
                "the probe records either all of a call's decoding steps compiled or none"
            )
        if compiled > armed[self.first_layer].rows.shape[0]:
            raise ProbeError(
                f"{compiled} decoding steps ran inside a compiled graph, more than the probe's buffers hold "
                f"({armed[self.first_layer].rows.shape[0]}): max_new_tokens given to AttentionProbe must cover generate's"
            )
        if next_keys is not None and next_keys is armed[self.first_layer].key:
            raise ProbeError("the static cache of a compiled generate call was reused by the next call before the probe scored it")
        self.flush()  # the prompt's row
        start = self.steps
        if self._rows.shape[0] < start + compiled:
            self._rows = torch.cat([self._rows, self._rows.new_zeros(start + compiled - self._rows.shape[0], *self._rows.shape[1:])])
        first = armed[self.first_layer]
        prompt_len, batch, device = first.prompt_len, first.rows.shape[1], first.rows.device
        masks = {layer: _decoding_mask(a.prompt_row, prompt_len, a.key.shape[2]) for layer, a in armed.items()}
        # rows at positions prompt_len, prompt_len + 1, ...: passes of FLUSH_STEPS rows, as when decoding eagerly
        for chunk in range(0, compiled, FLUSH_STEPS):
            count = min(FLUSH_STEPS, compiled - chunk)
            width = prompt_len + chunk + count
            kv_lens = [prompt_len + chunk + i + 1 for i in range(count)]
            shared: dict[int, torch.Tensor | None] = {}  # per mask: layers share the model's mask
            for layer, a in armed.items():
                mask = masks[layer]
                if id(mask) not in shared:
                    shared[id(mask)] = _rows_bias([mask] * count, kv_lens, width, batch, device)
                self._store(start + chunk, layer, a.rows[chunk : chunk + count], a.key[:, :, :width], shared[id(mask)])
        self.steps += compiled
        self._pending_from = self.steps

    def _check_every_pass_seen(self) -> None:
        """The first call's cache holds a key per position it was fed: every one but the last answer token's
        must have come through the probe (a compiled call of another model object, e.g. a copy of a model
        made after a compiled generate, runs the original's layers)."""
        layers = getattr(self.cache, "layers", None)
        if self._call_start or not layers or type(layers[0]) not in _FULL_KEY_CACHE_LAYERS or not self.steps:
            return
        held, seen = int(self.cache.get_seq_length()), self.prompt_len + self.steps - 1
        if held > seen:
            raise ProbeError(
                f"the KV cache holds {held} positions but only {seen} passed through the probe: {held - seen} forward "
                "passes ran other attention modules (a copy of a model made after a compiled generate runs the original's)"
            )

    def finish(self) -> None:
        """Score what is left and let go of the keys and the cache."""
        self._score_compiled()
        self.flush()
        self._check_every_pass_seen()
        self._keys = [None] * self.num_layers
        self._pending = [[None] * FLUSH_STEPS for _ in range(self.num_layers)]
        self.cache = None

    # ----- afterwards -----------------------------------------------------------------------------

    @property
    def path(self) -> str:
        """``deferred``, ``inline`` or ``mixed`` (some layers each; see ``inline_layers``)."""
        if self.answer_rows is not None:
            return PATH_FORCED
        decided = [d for d in self.deferred if d is not None]
        if decided and all(decided):
            return PATH_DEFERRED
        return PATH_INLINE if not any(decided) else PATH_MIXED

    def stats(self, lengths: Sequence[int] | None, segments: Sequence[SegmentRows | None] | None = None) -> list[SampleStats]:
        if not self.steps:
            raise ProbeError("no forward pass went through the probe: was generate called inside the `with` block?")
        missing = [layer for layer, d in enumerate(self.deferred) if d is None]
        if missing:
            raise ProbeError(
                f"language-model layers {missing} never passed through the probe (of {self.num_layers}); "
                "their attention does not use transformers' attention interface"
            )
        self._score_compiled()
        self.flush()
        data = self._rows[: self.steps].double().cpu().numpy()  # (T, L, B, C+1)
        total = data.shape[0]
        batch = data.shape[2]
        lengths = [total] * batch if lengths is None else [int(n) for n in lengths]
        if len(lengths) != batch or any(not 0 <= n <= total for n in lengths):
            raise ValueError(f"lengths must be {batch} integers in [0, {total}], got {lengths}")
        counts = self.classes.counts()
        sub_counts = self.classes.subclass_counts()
        groups = layer_groups(self.num_layers)
        columns = (*self.classes.names, GENERATED, *self.classes.subclasses)
        if segments is not None and len(segments) != batch:
            raise ValueError(f"segments must hold one split (or None) per sample: {batch}, got {len(segments)}")
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
                    subclass_counts=sub_counts[b],
                    subclass_mass={
                        name: summed[:, self.num_classes + 1 + j] for j, name in enumerate(self.classes.subclasses)
                    },
                    stepwise=StepMasses.from_rows(data[:n, :, b, :], groups, columns),
                )
            )
            if segments is not None and segments[b] is not None:
                out[-1] = replace(out[-1], segments=Segments.from_rows(out[-1], data[:n, :, b, :], segments[b]))
        return out


class AttentionProbe:
    """Context manager that measures every ``generate`` / forward call made inside it (one batch).

    ``answer_rows=T``: teacher-forced instead; the one forward pass inside it runs over the prompt
    and the first T - 1 tokens of answers (``core/forced.py`` builds its inputs), and the stats
    hold the T rows generate would have recorded for those answers.

    ``max_new_tokens``: the most tokens a generate call inside it produces. Decoding inside a compiled
    graph records into buffers sized by it (default: every position the static cache has beyond the
    prompt, which may be far more after a longer earlier call).

    ``attention_maps=True``: also keep the attention each non-text position receives
    (``core/position_maps.py``), read with ``attention_maps``; ``map_parts[b][class]`` gives the
    items' sizes so that pooling never mixes two items.
    """

    def __init__(
        self, model, classes: PositionClasses, answer_rows: int | None = None, max_new_tokens: int | None = None,
        attention_maps: bool = False, map_parts: Sequence[dict] | None = None,
    ):  # fmt: skip
        for name, value in (("answer_rows", answer_rows), ("max_new_tokens", max_new_tokens)):
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        self.model = model
        self.classes = classes
        self.answer_rows = answer_rows
        self.max_new_tokens = max_new_tokens
        self.want_maps = attention_maps
        self.map_parts = map_parts
        self._layer_of = language_model_layers(model)
        self._num_layers = model.config.get_text_config().num_hidden_layers
        self._recorder: _Recorder | None = None
        self._installed_here = False
        self._token = None
        self._hook = None

    def __enter__(self) -> "AttentionProbe":
        if _ACTIVE.get() is not None:
            raise ProbeError("another attention probe is already active in this context")
        if _compiled_as_a_whole(self.model):
            raise ProbeError(
                "the model's forward is compiled as a whole (torch.compile(model.forward) or model.compile()): the probe needs "
                "the prompt's pass to run eagerly; let generate compile the decoding steps instead (cache_implementation="
                "'static' with a compile_config; model_arg compile=true)"
            )
        self._installed_here = install(self.model)
        maps = PositionMaps(self.classes, self._num_layers, self.map_parts) if self.want_maps else None
        recorder = self._recorder = _Recorder(self._layer_of, self._num_layers, self.classes, self.answer_rows, maps)

        def see_cache(module, args, kwargs):
            # Which path a layer can take depends on its KV cache layer; the attention call does not see the cache.
            # The first pass decides every layer's path, so the hook goes at once: decoding steps may run inside a
            # compiled graph, which would trace it (and recompile for every new probe).
            recorder.cache = next((v for v in itertools.chain(args, kwargs.values()) if isinstance(v, Cache)), None)
            self._hook.remove()

        self._hook = _decoder(self.model).register_forward_pre_hook(see_cache, with_kwargs=True)
        recorder.max_new_tokens = self.max_new_tokens
        self._token = _ACTIVE.set(recorder)
        return self

    def __exit__(self, exc_type, *exc) -> None:
        _ACTIVE.reset(self._token)
        self._hook.remove()
        try:
            if exc_type is None:
                self._recorder.finish()
        finally:
            self._recorder.disarm()
            if self._installed_here:
                uninstall(self.model)

    @property
    def steps(self) -> int:
        """Forward passes recorded (= tokens generated by the longest sequence)."""
        return self._recorder.steps if self._recorder else 0

    @property
    def path(self) -> str:
        """How the rows were computed: ``deferred``, ``inline``, ``mixed`` (see ``inline_layers``) or ``teacher_forced``."""
        return self._recorder.path if self._recorder else PATH_INLINE

    @property
    def inline_layers(self) -> dict[int, str]:
        """Layers scored inline, with the reason (e.g. ``sliding-window attention``)."""
        return dict(self._recorder.inline_layers) if self._recorder else {}

    def stats(self, lengths: Sequence[int] | None = None, segments: Sequence[SegmentRows | None] | None = None) -> list[SampleStats]:
        """Per-sample stats; ``lengths[b]`` = output rows of sample b (default: every recorded step);
        ``segments[b]``: where sample b's thinking and answer rows lie (``core/segments.py``), or None."""
        if self._recorder is None:
            raise ProbeError("the probe has not been entered")
        return self._recorder.stats(lengths, segments)

    def attention_maps(self, lengths: Sequence[int] | None = None, quarters: bool = False) -> list[AttentionMaps]:
        """Per-sample attention maps over the same rows as ``stats(lengths)``; ``quarters``: also the
        answer's first and last quarter."""
        recorder = self._recorder
        if recorder is None or recorder.maps is None:
            raise ProbeError("the probe was not asked for attention maps (AttentionProbe(..., attention_maps=True))")
        recorder.flush()
        lengths = [recorder.steps] * self.classes.batch_size if lengths is None else [int(n) for n in lengths]
        if len(lengths) != self.classes.batch_size or any(not 0 <= n <= recorder.steps for n in lengths):
            raise ValueError(f"lengths must be {self.classes.batch_size} integers in [0, {recorder.steps}], got {lengths}")
        return recorder.maps.sample_maps(lengths, quarters)


@contextlib.contextmanager
def unprobed():
    """Forward passes inside are not recorded by an active probe (a second model state stepping beside
    the measured generate, e.g. contrastive decoding's)."""
    token = _ACTIVE.set(None)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


#: How a sequence of a ``generate`` call ended (``output_ends``).
FINISH_EOS, FINISH_STOP_STRING, FINISH_LENGTH = "eos", "stop_string", "length"


def output_lengths(
    generated: torch.Tensor,
    eos_token_id: int | Sequence[int] | None,
    pad_token_id: int | None,
    stop_strings: Sequence[str] | None = None,
    tokenizer=None,
    prompt: torch.Tensor | None = None,
) -> list[int]:
    """Output rows per sample of a ``generate`` call: the tokens each sequence generated before it finished.

    A sequence finishes with its first EOS token or, if ``stop_strings`` were given to generate
    (with ``tokenizer``), with the token that completes one; that token's row counts. Only what
    generate writes after it (``pad_token_id`` until the batch's longest sequence ends) is left
    out: a sequence that never finished keeps every row, pad tokens it generated itself included.
    ``prompt``: the input ids generate continued from, when stop strings may span the boundary.
    """
    return [n for n, _ in output_ends(generated, eos_token_id, pad_token_id, stop_strings, tokenizer, prompt)]


def output_ends(
    generated: torch.Tensor,
    eos_token_id: int | Sequence[int] | None,
    pad_token_id: int | None,
    stop_strings: Sequence[str] | None = None,
    tokenizer=None,
    prompt: torch.Tensor | None = None,
) -> list[tuple[int, str]]:
    """``output_lengths`` with how each sequence ended: ``eos``, ``stop_string`` or ``length`` (never finished)."""
    eos = set() if eos_token_id is None else ({eos_token_id} if isinstance(eos_token_id, int) else set(eos_token_id))
    if stop_strings and tokenizer is None:
        raise ValueError("output_lengths needs the tokenizer to find where stop strings ended a sequence")
    criterion = None
    sequences = generated if prompt is None else torch.cat([prompt.to(generated.device), generated], dim=1)
    offset = sequences.shape[1] - generated.shape[1]
    ends = []
    for b, row in enumerate(generated.tolist()):
        end = next((i + 1 for i, token in enumerate(row) if token in eos), None)
        reason = FINISH_LENGTH if end is None else FINISH_EOS
        end = len(row) if end is None else end
        if stop_strings:
            # Generate pads a finished sequence, so it finished at or after its last non-pad token.
            first = max((i for i in range(end) if row[i] != pad_token_id), default=0)
            criterion = criterion or StopStringCriteria(tokenizer, list(stop_strings))
            stop = next((i + 1 for i in range(first, end) if bool(criterion(sequences[b : b + 1, : offset + i + 1], None)[0])), None)
            if stop is not None and (stop < end or reason == FINISH_LENGTH):
                end, reason = stop, FINISH_STOP_STRING
        ends.append((end, reason))
    return ends
