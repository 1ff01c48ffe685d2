"""Shared lmms-eval adapter: argument validation, devices, batching, generate under the probe, hand-back.

A model family subclasses ``TextdomModel`` and says only how to load a checkpoint and how to turn a
batch of (context, visuals) into generate inputs plus the position-class map (``prepare``).
"""

from __future__ import annotations

import functools
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import torch
from loguru import logger
from lmms_eval.api.model import lmms
from transformers import AutoConfig, AutoProcessor, LogitsProcessorList
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from lmms_textdom.mitigations.attention import MASKED_IMPLEMENTATIONS, AttentionSwitches
from lmms_textdom.mitigations.blind import blind_request
from lmms_textdom.mitigations.contrastive import ContrastiveDecoding, SecondPass
from lmms_textdom.mitigations.noise import Corruption, NoiseSite
from lmms_textdom.mitigations.settings import SCALE, Switches, switches_from_args
from lmms_textdom.models.switch_args import SWITCH_MODEL_ARGS
from lmms_textdom.core.errors import UsageError, fail_loudly
from lmms_textdom.integration.generation import generation_result, with_token_counts
from lmms_textdom.integration.hook import encode_failure, encode_payload
from lmms_textdom.core.modality import PAD, PositionClasses
from lmms_textdom.analysis.knockout import knockout_effects
from lmms_textdom.analysis.layers import format_layers, parse_layers
from lmms_textdom.core.compiled import compiled_decoding
from lmms_textdom.models.analysis_session import analysis_session
from lmms_textdom.models.args import ATTENTION_MAPS, KEY_STATS, KEY_STATS_POSITIONS, KNOCKOUT_LAYERS, KNOCKOUT_SCORE, Arg, parse_model_args
from lmms_textdom.models.checkpoint import check_reachable
from lmms_textdom.models.failures import RECORD, STOP, Responding, free_memory, per_sample
from lmms_textdom.core.forced import answer_tensor, forced_inputs
from lmms_textdom.core.probe import AttentionProbe, install, output_ends, text_attention_implementation
from lmms_textdom.models.answer_log import logged_answer
from lmms_textdom.models.thinking import THINK_MARKERS, marker_finder
from lmms_textdom.models.placement import parts_of, run_items

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
# Task generation kwargs forwarded to transformers' generate (``until`` becomes stop strings).
GENERATION_KEYS = ("max_new_tokens", "min_new_tokens", "temperature", "top_p", "top_k", "num_beams", "repetition_penalty")
DEFAULT_MAX_NEW_TOKENS = 256

COMMON_ARGS = (
    Arg("revision", "main", "hub revision of the checkpoint"),
    Arg("device", None, "cuda, cuda:N or cpu; default cuda (the rank's own GPU under torchrun/accelerate) else cpu"),
    Arg("device_map", None, "'auto' spreads one large checkpoint over all visible GPUs (single process)"),
    Arg("dtype", "auto", "weights dtype; auto = bfloat16 on GPU, float32 on CPU", choices=("auto", *DTYPES)),
    Arg(
        "attn_implementation", "sdpa", "attention of the model (the probe wraps the language model's): sdpa, eager, "
        "flash_attention_2/3, flex_attention or any name registered in transformers' AttentionInterface",
        check=lambda name: name == "eager" or (name in ALL_ATTENTION_FUNCTIONS and not name.startswith(("paged|", "textdom_"))),
        requirement="eager or a name registered in transformers' AttentionInterface (not paged attention)",
    ),
    Arg("textdom", True, "measure MDI/AEI; false = plain generation", kind=bool),
    Arg(
        "compile", False, "decode with a static KV cache and the decoding step compiled by torch.compile (the probe records "
        "inside the graph; the first batch of each shape compiles for minutes); sdpa or eager attention", kind=bool,
    ),  # fmt: skip
    Arg("batch_size", 1, "requests per generate call (left padding)", kind=int, check=lambda v: v >= 1, requirement="an integer >= 1"),
    Arg("max_batch_size", None, "accepted from the lmms-eval CLI, unused", kind=int),
    Arg("trust_remote_code", False, "allow checkpoint code from the hub", kind=bool),
    Arg(
        "on_sample_error", RECORD, "a request that fails on its own: record = empty answer and a failure record, "
        "left out of MDI/AEI, the run goes on; stop = end the run there, naming it", choices=(RECORD, STOP),
    ),
    *SWITCH_MODEL_ARGS,
    KNOCKOUT_LAYERS,
    KNOCKOUT_SCORE,
    KEY_STATS,
    KEY_STATS_POSITIONS,
    THINK_MARKERS,
    ATTENTION_MAPS,
)


@dataclass
class Request:
    """What a family needs of one lmms-eval request."""

    context: str
    visuals: list
    doc: dict
    gen_kwargs: dict


@dataclass
class Prepared:
    """Inputs of one generate call and the class of every position the language model will see."""

    inputs: dict[str, Any]
    classes: PositionClasses
    sample_settings: list[dict] = field(default_factory=list)  # per-sample effective settings, if any
    decoded: list[list] = field(default_factory=list)  # per sample, visuals as the family decoded them (video frames), if any


def plan_batches(contexts: Sequence[str], gen_kwargs: Sequence[dict], batch_size: int) -> list[list[int]]:
    """Request indices grouped by identical generation kwargs, longest context first, in chunks."""
    groups: dict[str, list[int]] = {}
    for i, kw in enumerate(gen_kwargs):
        groups.setdefault(json.dumps(kw, sort_keys=True, default=str), []).append(i)
    batches = []
    for indices in groups.values():
        indices.sort(key=lambda i: -len(contexts[i]))
        batches += [indices[k : k + batch_size] for k in range(0, len(indices), batch_size)]
    return batches


def cut_at_stop(text: str, until: Sequence[str]) -> str:
    for stop in until:
        if stop:
            text = text.split(stop)[0]
    return text


class TextdomModel(lmms):
    is_simple = True
    MODEL_ID = "textdom"
    DEFAULT_PRETRAINED = ""
    FAMILY_ARGS: tuple[Arg, ...] = ()

    @classmethod
    def model_args_spec(cls) -> tuple[Arg, ...]:
        return (Arg("pretrained", cls.DEFAULT_PRETRAINED, "hub id or local checkpoint folder"), *COMMON_ARGS, *cls.FAMILY_ARGS)

    def __init__(self, **kwargs) -> None:
        super().__init__()
        try:
            self.args = parse_model_args(self.model_args_spec(), kwargs, self.MODEL_ID)
            self.args["attention_maps"] = str(self.args["attention_maps"]).lower()  # lmms-eval hands over true as a bool
            self._rank = int(os.environ.get("RANK", 0))
            self._world_size = int(os.environ.get("WORLD_SIZE", 1))
            self._device = self._resolve_device()
            self.dtype = self._resolve_dtype()
            self.check_args()
            self.switches = self._switches()
            self.knockout = self._knockout_layers()
            self._check_compile()
            self.model, self.processor = self.load()
            self.model.eval()
            self.thinking = marker_finder(self.args["think_markers"], self.tokenizer, self.FAMILY_THINK_MARKERS) if self.args["textdom"] else None
            if self.args["device_map"] == "auto":
                self._device = self.model.device
            if self.args["textdom"] or self.knockout or self.switches.edits_attention:
                install(self.model)
        except Exception as exc:
            fail_loudly(exc)

    # ----- what a family provides ---------------------------------------------------------------

    #: why ``compile=true`` cannot work for this family (None: its language model decodes compiled)
    NO_COMPILED_DECODING: str | None = None

    def check_args(self) -> None:
        """Cross-checks of model_args that need no weights (may read the checkpoint's config)."""
        self.checkpoint_config()

    def language_model_depth(self) -> int:
        """Layers of the language model, from the checkpoint's config as this family translates it (no weights)."""
        return self.checkpoint_config().get_text_config().num_hidden_layers

    def load(self):
        """Return (model, processor) for ``self.args['pretrained']`` on ``self.device`` in ``self.dtype``."""
        raise NotImplementedError

    def prepare(self, batch: list[Request]) -> Prepared:
        raise NotImplementedError

    #: the markers this family's thinking checkpoints write, when neither tokenizer nor chat template names them
    FAMILY_THINK_MARKERS: tuple[str, str] = ("<think>", "</think>")

    def map_items(self, batch: list[Request], prepared: Prepared) -> list[list[dict]]:
        """Per sample, where each non-text item's positions lie (``models/placement.py``), in sequence order.
        A family that describes nothing gets each run of a class with its size only."""
        return [run_items(prepared.classes, b) for b in range(len(batch))]

    #: name of the family's pruning method, recorded with the results ("cls" = FasterVLM)
    PRUNE_METHOD: str | None = None

    def settings(self) -> dict[str, Any]:
        """Effective run settings recorded with every sample (the leaderboard tells runs apart by them)."""
        ratio = self.args.get("prune_ratio", 0.0)
        return {
            "model": self.MODEL_ID,
            "pretrained": self.args["pretrained"],
            "dtype": str(self.dtype).removeprefix("torch."),
            "attn_implementation": text_attention_implementation(self.model),
            "prune_method": self.PRUNE_METHOD if ratio else None,
            "prune_ratio": ratio,
            "nontext_repeat": self.args.get("nontext_repeat", 1),
            "knockout_layers": format_layers(self.knockout),
            "key_stats": self.args["key_stats"],
            **self.switches.record(),
            "attention_maps": self.args["attention_maps"],
        }

    @property
    def edits_nontext(self) -> bool:
        """Whether pruning or replication changes the non-text part of the input."""
        return self.args.get("prune_ratio", 0.0) > 0 or self.args.get("nontext_repeat", 1) > 1

    def _switches(self) -> Switches:
        """The mitigation switches, checked against the checkpoint's depth and this family (before any weights load)."""
        try:
            switches = switches_from_args(self.args, self.language_model_depth)
        except ValueError as exc:
            raise UsageError(f"{self.MODEL_ID}: {exc}") from None
        if switches.boosts and switches.boost_mode == SCALE and self.args["attn_implementation"] not in MASKED_IMPLEMENTATIONS:
            raise UsageError(
                f"{self.MODEL_ID}: attn_boost_mode=scale adds a bias to the attention mask, which "
                f"{self.args['attn_implementation']!r} attention does not take; use attn_implementation=sdpa or eager, or attn_boost_mode=pai"
            )
        if self.args.get("compile") and (switches.edits_attention or switches.contrasts):
            raise UsageError(f"{self.MODEL_ID}: attn_boost, attn_shift and vcd_alpha run in eager decoding only; use compile=false with them")
        if switches.contrasts and not self.NOISE_SITES:
            raise UsageError(f"{self.MODEL_ID}: vcd_alpha needs a non-text encoder to noise, and this family names none; use vcd_alpha=0")
        return switches

    #: placeholders that the task's own text carries (blind=true cuts them from it)
    CONTEXT_PLACEHOLDERS: tuple[str, ...] = ()
    #: the non-text encoders whose input VCD noises: (attribute path from the adapter, input name, scaled
    #: by the input's own spread: for inputs not of unit scale), see ``mitigations/noise.py``
    NOISE_SITES: tuple[tuple[str, str, bool], ...] = ()

    def noise_sites(self) -> list[NoiseSite]:
        return [NoiseSite(functools.reduce(getattr, path.split("."), self), name, scaled) for path, name, scaled in self.NOISE_SITES]

    def _contrast(self, batch: list[Request], clean: Prepared, prompt_ids: int) -> ContrastiveDecoding:
        """VCD's processor: the batch prepared again with its non-text input noised (pruning, if on, then
        scores the noised input), stepped beside generate."""
        switches = self.switches
        corruption = Corruption(self.noise_sites(), switches.vcd_noise, switches.vcd_seed)
        with torch.inference_mode(), corruption.active():
            noised = self.prepare(batch)
        if not torch.equal(noised.classes.ids, clean.classes.ids):
            raise RuntimeError(f"{self.MODEL_ID}: the noised input gives another sequence layout than the clean one")
        second = SecondPass(self.model, self._to_device(noised.inputs))
        return ContrastiveDecoding(second, corruption, switches.vcd_alpha, switches.vcd_beta, prompt_ids)

    def _knockout_layers(self) -> frozenset[int]:
        """``knockout_layers`` checked against the checkpoint's depth (config only, before any weights load)."""
        for name in ("key_stats", "knockout_score", "attention_maps"):
            value = self.args[name]
            if value not in (False, "false") and not self.args["textdom"]:
                shown = str(value).lower() if isinstance(value, bool) else value  # as the user writes it in model_args
                raise UsageError(f"{self.MODEL_ID}: {name}={shown} records into the textdom payload; it needs textdom=true")
        text = self.args["knockout_layers"]
        if text is None or str(text).strip().lower() in ("", "none"):
            return frozenset()
        depth = self.language_model_depth()
        try:
            return parse_layers(text, depth)
        except ValueError as exc:
            raise UsageError(f"{self.MODEL_ID}: model_arg knockout_layers={text!r} is invalid: {exc}") from None

    def _check_compile(self) -> None:
        if not self.args["compile"]:
            return
        if self.NO_COMPILED_DECODING:
            raise UsageError(f"{self.MODEL_ID}: compile=true is not supported: {self.NO_COMPILED_DECODING}; use compile=false")
        if self.args["attn_implementation"] not in ("sdpa", "eager"):
            raise UsageError(f"{self.MODEL_ID}: compile=true needs attn_implementation=sdpa or eager, not {self.args['attn_implementation']!r}")
        if self.knockout or self.args["key_stats"]:
            raise UsageError(f"{self.MODEL_ID}: knockout_layers and key_stats run in eager decoding only; use compile=false with them")

    #: the task sweeps run when none is named (``lmms-textdom table2 --model ...``)
    DEFAULT_TASK = "mmmu_pro_textdom"

    # ----- helpers for families ------------------------------------------------------------------

    #: the checkpoints' ``model_type`` and what to call them in errors, e.g. ("llava", "LLaVA-1.5")
    MODEL_TYPE: str | None = None
    CHECKPOINTS = ""

    def checkpoint_config(self):
        """The checkpoint's config (no weights), after checking that it is of this family's ``MODEL_TYPE``."""
        check_reachable(self.args["pretrained"], self.args["revision"])
        config = AutoConfig.from_pretrained(
            self.args["pretrained"], revision=self.args["revision"], trust_remote_code=self.args["trust_remote_code"]
        )
        if self.MODEL_TYPE is not None and config.model_type != self.MODEL_TYPE:
            raise UsageError(
                f"{self.MODEL_ID} loads {self.CHECKPOINTS} checkpoints (model_type {self.MODEL_TYPE!r}); "
                f"{self.args['pretrained']} is model_type {config.model_type!r}"
            )
        return config

    def load_processor(self):
        """The checkpoint's processor, its tokenizer padding on the left (decoder-only batching)."""
        processor = AutoProcessor.from_pretrained(
            self.args["pretrained"], revision=self.args["revision"], trust_remote_code=self.args["trust_remote_code"]
        )
        processor.tokenizer.padding_side = "left"
        return processor

    # ----- plumbing ------------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def tokenizer(self):
        return self.processor.tokenizer

    def _resolve_device(self) -> torch.device:
        device = self.args["device"]
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cuda" and self._world_size > 1:
            device = f"cuda:{local_rank}"
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise UsageError(f"{self.MODEL_ID}: device={device} but no CUDA device is available; pass --device cpu")
        return torch.device(device)

    def _resolve_dtype(self) -> torch.dtype:
        name = self.args["dtype"]
        if name == "auto":
            return torch.bfloat16 if self._device.type == "cuda" else torch.float32
        return DTYPES[name]

    def from_pretrained_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for a family's ``from_pretrained`` call."""
        return {
            "revision": self.args["revision"],
            "dtype": self.dtype,
            "device_map": self.args["device_map"] or self._device,
            "attn_implementation": self.args["attn_implementation"],
            "trust_remote_code": self.args["trust_remote_code"],
        }

    def generation_kwargs(self, gen_kwargs: dict) -> tuple[dict[str, Any], list[str]]:
        kw = dict(gen_kwargs)
        until = kw.pop("until", None) or []
        until = [until] if isinstance(until, str) else list(until)
        out: dict[str, Any] = {k: kw.pop(k) for k in GENERATION_KEYS if k in kw}
        do_sample = kw.pop("do_sample", None)
        temperature = float(out.pop("temperature", 0) or 0)
        out["do_sample"] = bool(do_sample) if do_sample is not None else temperature > 0
        if out["do_sample"]:
            out["temperature"] = temperature or 1.0
        out.setdefault("max_new_tokens", DEFAULT_MAX_NEW_TOKENS)
        if self.args["compile"]:
            out.update(compiled_decoding())
        if out.get("num_beams", 1) not in (1, None) and self.args["textdom"]:
            raise UsageError(f"{self.MODEL_ID}: textdom measures greedy or sampled decoding; the task asks num_beams={out['num_beams']}")
        if out.get("num_beams", 1) not in (1, None) and self.switches.contrasts:
            raise UsageError(f"{self.MODEL_ID}: vcd_alpha contrasts greedy or sampled decoding, not beam search (the task asks num_beams={out['num_beams']}); use vcd_alpha=0")
        if kw:
            logger.debug(f"{self.MODEL_ID}: ignoring generation kwargs {sorted(kw)}")
        if any(until):
            out["stop_strings"] = [s for s in until if s]
            out["tokenizer"] = self.tokenizer
        return out, until

    def _request(self, instance) -> Request:
        context, gen_kwargs, doc_to_visual, doc_id, task, split = instance.args
        doc = self.task_dict[task][split][doc_id]
        visuals = doc_to_visual(doc) if doc_to_visual is not None else []
        return Request(context, [v for v in (visuals or []) if v is not None], doc, dict(gen_kwargs))

    #: floating-point inputs that keep their dtype instead of taking the weights' dtype
    FLOAT32_INPUTS: tuple[str, ...] = ()

    def _to_device(self, inputs: dict[str, Any]) -> dict[str, Any]:
        moved = {}
        for key, value in inputs.items():
            if isinstance(value, torch.Tensor):
                cast = value.is_floating_point() and key not in self.FLOAT32_INPUTS
                value = value.to(self.device, dtype=self.dtype if cast else None)
            moved[key] = value
        return moved

    def _run_batch(self, batch: list[Request]) -> list:
        if self.switches.blind:
            batch = [blind_request(r, self.CONTEXT_PLACEHOLDERS) for r in batch]
        prepared = self.prepare(batch)
        gen, until = self.generation_kwargs(batch[0].gen_kwargs)
        inputs = self._to_device(prepared.inputs)
        # generate returns the prompt ids in front of the new tokens, except when given embeddings
        prompt_len = inputs["input_ids"].shape[1] if "input_ids" in inputs else 0
        pad_id = self.pad_token_id
        key_positions = self.args["key_stats_positions"] if self.args["key_stats"] else 0
        if self.switches.contrasts:  # VCD's second pass steps beside generate (knockout_score, which reuses gen, is refused with it)
            gen["logits_processor"] = LogitsProcessorList([self._contrast(batch, prepared, prompt_len)])
        items, parts = self._map_plan(batch, prepared)
        with torch.inference_mode(), analysis_session(self.model, prepared.classes, self.knockout, key_positions, self.switches) as keys:
            if self.args["textdom"]:
                with AttentionProbe(
                    self.model, prepared.classes, max_new_tokens=gen["max_new_tokens"], attention_maps=items is not None, map_parts=parts
                ) as probe:
                    out = self.model.generate(**inputs, **gen, pad_token_id=pad_id)
            else:
                out = self.model.generate(**inputs, **gen, pad_token_id=pad_id)
        new = out[:, prompt_len:]
        texts = [cut_at_stop(t, until) for t in self.tokenizer.batch_decode(new, skip_special_tokens=True)]
        # Rows end where each sequence finished: its EOS or the token completing a stop string.
        ends = output_ends(
            new, self.model.generation_config.eos_token_id, pad_id, gen.get("stop_strings"), self.tokenizer,
            inputs["input_ids"] if prompt_len else None,
        )  # fmt: skip
        lengths = [n for n, _ in ends]
        seen = (prepared.classes.ids != PAD).sum(1).tolist()  # prompt positions the language model saw
        if not self.args["textdom"]:  # ids and ending logged: `lmms-textdom measure` can measure it exactly
            return [logged_answer(t, p, new[b, :n].tolist(), r) for b, (t, p, (n, r)) in enumerate(zip(texts, seen, ends))]
        effects = [None] * len(batch)
        if self.knockout and self.args["knockout_score"]:
            with torch.inference_mode():
                effects = knockout_effects(self.model, inputs, gen, pad_id, prepared.classes, self.knockout, new, prompt_len)
        stats = probe.stats(lengths, self.segment_rows([new[b, :n].tolist() for b, n in enumerate(lengths)], inputs))
        run = {**self.settings(), "probe_path": probe.path}
        extra = prepared.sample_settings or [{}] * len(batch)
        key_stats = keys.samples() if keys is not None else [None] * len(batch)
        maps = self._map_records(probe, lengths, items)
        answers = [
            [text, encode_payload(s, {**run, **e}, per_sample=e, key_stats=k, knockout=f, attention_maps=m)]
            for text, s, e, k, f, m in zip(texts, stats, extra, key_stats, effects, maps)
        ]
        return with_token_counts(answers, seen, lengths)

    def segment_rows(self, answers: list[list[int]], inputs: dict[str, Any]) -> list | None:
        """Where each answer's thinking and answer rows lie (``models/thinking.py``); None with ``think_markers=none``."""
        if self.thinking is None:
            return None
        prompts = inputs.get("input_ids")  # left-padded: each row ends with its own prompt's last tokens
        return [self.thinking.rows(a, None if prompts is None else prompts[b].tolist()) for b, a in enumerate(answers)]

    def _map_plan(self, batch: list[Request], prepared: Prepared) -> tuple[list | None, list | None]:
        """(per-sample placement items, per-sample parts) when attention maps are asked, else (None, None)."""
        if self.args["attention_maps"] == "false" or not self.args["textdom"]:
            return None, None
        items = self.map_items(batch, prepared)
        return items, [parts_of(sample, prepared.classes.names[1:]) for sample in items]

    def _map_records(self, probe: AttentionProbe, lengths: list[int], items: list | None) -> list[dict | None]:
        if items is None:
            return [None] * len(lengths)
        maps = probe.attention_maps(lengths, quarters=self.args["attention_maps"] == "steps")
        return [replace(m, items=sample).to_dict() for m, sample in zip(maps, items)]

    def response_batches(self, requests) -> list[list[int]]:
        """Indices of ``requests`` in the batches that ``generate_until`` runs."""
        return plan_batches([r.args[0] for r in requests], [r.args[1] for r in requests], self.args["batch_size"])

    _responding: Responding | None = None

    @contextmanager
    def responding(self, total: int):
        """One progress bar and one failure summary for every ``generate_until`` call inside (the
        response cache calls it once per batch, ``integration/resume.py``)."""
        if self._responding is not None:
            yield self._responding
            return
        self._responding = Responding(self.MODEL_ID, total, self.args["on_sample_error"], self.rank, self.world_size)
        try:
            yield self._responding
        finally:
            run, self._responding = self._responding, None
            run.close()

    @property
    def pad_token_id(self) -> int | None:
        pad_id = self.tokenizer.pad_token_id
        return self.model.generation_config.pad_token_id if pad_id is None else pad_id

    def measure_batch(self, batch: list[Request], answers: list[list[int]], run_settings: dict, answer_records: list[dict]) -> list[str]:
        """Payloads of given answers (token ids, each up to the token that ended it) to ``batch``: one
        teacher-forced forward pass under the probe, with the rows generate would have recorded (and the
        attention switches, if on, in their layers)."""
        prepared = self.prepare(batch)
        inputs = self._to_device(prepared.inputs)
        pad_id = self.pad_token_id
        tokens = answer_tensor(answers, 0 if pad_id is None else pad_id, self.device)
        items, parts = self._map_plan(batch, prepared)
        with (
            torch.inference_mode(),
            AttentionSwitches(self.model, self.switches, prepared.classes),
            AttentionProbe(
                self.model, prepared.classes, answer_rows=tokens.shape[1], attention_maps=items is not None, map_parts=parts
            ) as probe,
        ):  # fmt: skip
            self.model(**forced_inputs(self.model, inputs, tokens))
        lengths = [len(a) for a in answers]
        stats = probe.stats(lengths, self.segment_rows(answers, inputs))
        run = {**self.settings(), "probe_path": probe.path, **run_settings}
        extra = prepared.sample_settings or [{}] * len(batch)
        maps = self._map_records(probe, lengths, items)
        return [
            encode_payload(s, {**run, **e}, per_sample=e, answer=a, attention_maps=m)
            for s, e, a, m in zip(stats, extra, answer_records, maps)
        ]

    def generate_until(self, requests) -> list:
        try:
            nested = self._responding is not None
            with self.responding(len(requests)) as run:
                results: list = [None] * len(requests)
                for indices in self.response_batches(requests):
                    for i, output in zip(indices, self._respond(requests, indices, run)):
                        results[i] = generation_result(output)
                    if not nested:
                        run.progress.update(len(indices))
                return results
        except Exception as exc:
            fail_loudly(exc)

    def _respond(self, requests, indices: list[int], run: Responding) -> list:
        """Answers of one batch; a batch that fails is retried one request at a time (``failures.py``)."""
        try:
            outputs = self._run_batch([self._request(requests[i]) for i in indices])
        except Exception as exc:
            if not per_sample(exc):
                raise
            free_memory()
            if len(indices) > 1:
                logger.warning(f"{self.MODEL_ID}: a batch of {len(indices)} failed ({type(exc).__name__}: {exc}); retrying its requests one at a time")
                return [output for i in indices for output in self._respond(requests, [i], run)]
            failure = run.fail(requests[indices[0]], exc)
            return [["", encode_failure(failure.record(), self.settings())]]
        run.answered += len(indices)
        return outputs

    def loglikelihood(self, requests):
        fail_loudly(UsageError(f"{self.MODEL_ID} runs generate_until tasks only (the metrics need generated tokens)"))

    def generate_until_multi_round(self, requests):
        fail_loudly(UsageError(f"{self.MODEL_ID} does not run multi-round tasks"))
