"""Every family held to its real checkpoints' own files (``tests/real_layouts/<org>__<name>/``).

The folders hold the public non-weight files of the checkpoints the paper uses (config, weight names,
tokenizer and processor configs, chat templates, generation configs), each with a SOURCES file.
What could not be found whole in a public stored copy is listed in ``NOT_FOUND``, and
``test_folder_holds_exactly_what_the_record_says`` holds the folders to that record, so a file
added later turns its checks on and a file removed fails loudly instead of skipping.

Where no weight index was found, ``DERIVED`` names the structure for which a folder's tensor_names.txt
was derived from the model's own public code (its SOURCES says how); those names are checked the same way.

For each checkpoint whose files are here:
- the family's config translation accepts the real config.json (and the knock-out depth comes from it);
- the family's model class, built from it on the meta device (no memory), has exactly the parameter
  names that the family's key mapping makes of the real weight names;
- the special tokens the adapter relies on have the ids it expects;
- the real chat template renders the prompt the adapter builds;
- the real preprocessing constants are the ones the adapter's inputs assume.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import (
    Kimi_K25ForConditionalGeneration,
    LlamaForCausalLM,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2AudioForConditionalGeneration,
    VideoLlama3ForConditionalGeneration,
)
from transformers.conversion_mapping import get_model_conversion_mapping
from transformers.core_model_loading import MergeModulelist, WeightConverter, WeightRenaming, rename_source_key
from transformers.utils.loading_report import LoadStateDictInfo

from lmms_textdom.core.errors import UsageError
from lmms_textdom.models.args import parse_model_args
from lmms_textdom.models.chatts.adapter import ChatTSTextdom
from lmms_textdom.models.chatts.config import WRAPPER_KEYS
from lmms_textdom.models.graphgpt.adapter import GraphGPTTextdom
from lmms_textdom.models.graphgpt.checkpoint import llama_config
from lmms_textdom.models.kimi_vl import checkpoint as kimi_checkpoint
from lmms_textdom.models.kimi_vl.adapter import KimiVLTextdom
from lmms_textdom.models.llava.adapter import FALLBACK_PROMPT, TOWERS_WITH_CLS, LlavaHfTextdom
from lmms_textdom.models.llava_next.adapter import LlavaNextTextdom
from lmms_textdom.models.qwen2_5_vl import inputs as qwen_inputs
from lmms_textdom.models.qwen2_5_vl.adapter import MIN_FRAME_PIXELS, Qwen25VLTextdom
from lmms_textdom.models.qwen2_audio.adapter import Qwen2AudioTextdom
from lmms_textdom.models.videollama3 import checkpoint as videollama3_checkpoint
from lmms_textdom.models.videollama3.adapter import VideoLlama3Textdom

REAL = Path(__file__).parent / "real_layouts"
#: the weight names of a checkpoint: its shard index's keys, sorted, one per line (see each SOURCES)
NAMES = "tensor_names.txt"


@dataclass(frozen=True)
class Checkpoint:
    hub_id: str
    adapter: type | None  # None: the family's adapter is not imported here (no real file to test it on)
    files: tuple[str, ...]  # the hub files these tests read (NAMES stands for the weight index)
    folder_name: str = ""

    @property
    def folder(self) -> Path:
        return REAL / (self.folder_name or self.hub_id.replace("/", "__"))

    def path(self, name: str) -> Path:
        return self.folder / name

    def has(self, *names: str) -> bool:
        return all(self.path(n).is_file() for n in names)

    def json(self, name: str) -> dict:
        return json.loads(self.path(name).read_text())


LLAVA_FILES = (
    "config.json", NAMES, "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
    "preprocessor_config.json", "processor_config.json", "chat_template.jinja", "generation_config.json",
)  # fmt: skip
QWEN_FILES = ("config.json", NAMES, "tokenizer_config.json", "preprocessor_config.json", "chat_template.json", "generation_config.json")
KIMI_FILES = ("config.json", NAMES, "tokenizer_config.json", "preprocessor_config.json", "chat_template.jinja", "generation_config.json")
VIDEOLLAMA3_FILES = ("config.json", NAMES, "tokenizer_config.json", "preprocessor_config.json", "generation_config.json")
CHATTS_FILES = ("config.json", NAMES, "tokenizer_config.json", "added_tokens.json", "generation_config.json")
GRAPHGPT_FILES = ("config.json", NAMES, "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json", "generation_config.json")

CHECKPOINTS = (
    Checkpoint("llava-hf/llava-1.5-7b-hf", LlavaHfTextdom, (*LLAVA_FILES, "chat_template.json")),
    Checkpoint("llava-hf/llava-v1.6-mistral-7b-hf", LlavaNextTextdom, LLAVA_FILES),
    Checkpoint("llava-hf/llava-v1.6-vicuna-7b-hf", LlavaNextTextdom, LLAVA_FILES),
    Checkpoint("Qwen/Qwen2.5-VL-7B-Instruct", Qwen25VLTextdom, QWEN_FILES),
    Checkpoint("Qwen/Qwen2.5-VL-32B-Instruct", Qwen25VLTextdom, ("config.json",)),
    Checkpoint("Qwen/Qwen2.5-VL-72B-Instruct", Qwen25VLTextdom, ("config.json",)),
    Checkpoint("Qwen/Qwen2-Audio-7B-Instruct", Qwen2AudioTextdom, QWEN_FILES),
    Checkpoint("moonshotai/Kimi-VL-A3B-Instruct", KimiVLTextdom, KIMI_FILES),
    Checkpoint("moonshotai/Kimi-VL-A3B-Thinking", None, KIMI_FILES),
    Checkpoint("moonshotai/Kimi-VL-A3B-Thinking-2506", None, KIMI_FILES),
    Checkpoint("DAMO-NLP-SG/VideoLLaMA3-7B", VideoLlama3Textdom, VIDEOLLAMA3_FILES),
    Checkpoint("DAMO-NLP-SG/VideoLLaMA3-2B", VideoLlama3Textdom, VIDEOLLAMA3_FILES),
    Checkpoint("lkhl/VideoLLaMA3-7B-Image-HF", None, (*VIDEOLLAMA3_FILES, "chat_template.json")),
    Checkpoint("lkhl/VideoLLaMA3-2B-Image-HF", None, (*VIDEOLLAMA3_FILES, "chat_template.json")),
    Checkpoint("bytedance-research/ChatTS-14B", ChatTSTextdom, CHATTS_FILES, "bytedance-research__ChatTS-14B-0801"),
    Checkpoint("bytedance-research/ChatTS-14B", ChatTSTextdom, CHATTS_FILES, "bytedance-research__ChatTS-14B-original"),
    Checkpoint("Jiabin99/GraphGPT-7B-mix-all", GraphGPTTextdom, GRAPHGPT_FILES),
)

ALL = "every file"
NO_DAMO_FILES = {
    name: "no whole copy found (DAMO's GitHub repository ships the model code, not the hub files; the hub's stored"
    " pages give tree listings with sizes, e.g. config.json 1.22 kB, and for 2B the first 28 of config.json's 44"
    " lines in commit 6fde53b, not the files)"
    for name in ("config.json", "tokenizer_config.json", "preprocessor_config.json", "generation_config.json")
}
#: files of each checkpoint that no public stored copy held whole: checkpoint folder -> {file or ALL: why}.
#: Searched: GitHub repositories that vendor hub folders (find_files on <name>/config.json, find_string on
#: each family's distinctive config strings), the hub's own file, blame and tree pages in the stored web
#: and documentation index, and joshuahickscorp/hawking's ARCHITECTURE_RECOGNIZER_FIXTURES.json (its five
#: entries: Qwen3-30B-A3B, Kimi-VL-A3B-Instruct, Qwen3-VL-30B-A3B-Instruct, GLM-4.5-Air, Mistral-Small-3.1).
NOT_FOUND: dict[str, dict[str, str]] = {
    "llava-hf__llava-1.5-7b-hf": {},
    "llava-hf__llava-v1.6-mistral-7b-hf": {
        NAMES: "model.safetensors.index.json: the hub page does not display it; no stored copy",
        **{name: "no whole copy (hub pages found only for config.json and generation_config.json; other copies are derivatives')"
           for name in LLAVA_FILES if name not in ("config.json", NAMES, "generation_config.json")},
    },
    "llava-hf__llava-v1.6-vicuna-7b-hf": {
        NAMES: "model.safetensors.index.json (70.2 kB): the hub page does not display it; no stored copy",
        **{name: "no whole copy (hub pages found only for config.json and generation_config.json)"
           for name in LLAVA_FILES if name not in ("config.json", NAMES, "generation_config.json")},
    },
    "Qwen__Qwen2.5-VL-7B-Instruct": {
        NAMES: "model.safetensors.index.json: no whole copy found (the adapter's meta model has 729 names, unverified)",
        "tokenizer_config.json": "no whole copy found",
        "preprocessor_config.json": "no whole copy found (only a printed processor repr in a Markdown note)",
        "chat_template.json": "no whole copy found",
        "generation_config.json": "no whole copy found",
    },
    "Qwen__Qwen2.5-VL-32B-Instruct": {ALL: "no whole copy found"},
    "Qwen__Qwen2.5-VL-72B-Instruct": {ALL: "no whole copy found"},
    "Qwen__Qwen2-Audio-7B-Instruct": {
        NAMES: "model.safetensors.index.json (79 kB): the hub page does not display it; no stored copy",
        "tokenizer_config.json": "638 kB, 'too large to display' on the hub; no stored copy",
        "chat_template.json": "only on the hub PR refs/pr/13, and its shown text serialises to 749 of the stated 750 bytes",
        "generation_config.json": "230 bytes; no page showing its content found (other projects' tests re-type two of its keys)",
    },
    "moonshotai__Kimi-VL-A3B-Instruct": {
        "tokenizer_config.json": "no whole copy found (only other Kimi models' tokenizer configs, and excerpts)",
        "preprocessor_config.json": "no whole copy found (its keys are known from code that reads it, not the file)",
        "chat_template.jinja": "no whole copy found",
        "generation_config.json": "no whole copy found",
    },
    "moonshotai__Kimi-VL-A3B-Thinking": {ALL: "no whole copy found; hub file pages only as excerpts"},
    "moonshotai__Kimi-VL-A3B-Thinking-2506": {ALL: "no whole copy found"},
    "DAMO-NLP-SG__VideoLLaMA3-7B": NO_DAMO_FILES,
    "DAMO-NLP-SG__VideoLLaMA3-2B": NO_DAMO_FILES,
    "lkhl__VideoLLaMA3-7B-Image-HF": {ALL: "no whole copy found"},
    "lkhl__VideoLLaMA3-2B-Image-HF": {ALL: "no whole copy found"},
    "bytedance-research__ChatTS-14B-0801": {
        ALL: "no whole copy found (the 0801 config is known from a mirror's page excerpt only; the hub's stored pages"
        " of main/config.json and refs/pr/28 show the original release's file or the code, not the 0801 config)"
    },
    "bytedance-research__ChatTS-14B-original": {
        name: "no whole copy found (the hub page of config.json only)" for name in CHATTS_FILES if name != "config.json"
    },
    "Jiabin99__GraphGPT-7B-mix-all": {
        name: "no whole copy found (the hub page of config.json only; added_tokens.json's page shows its ids, not its layout)"
        for name in GRAPHGPT_FILES if name != "config.json"
    },
}


def videollama3_structure(text: dict) -> object:
    """The native config of a DAMO ``videollama3_qwen2`` config of the published structure, through the
    adapter's own translation: the Qwen2.5 base named in DAMO's README and the SigLIP-so400m tower
    (27 layers); on the meta device only the depths and the embedding tying shape the names."""
    vision = {"model_type": "videollama3_vision_encoder", "hidden_size": 1152, "intermediate_size": 4304,
              "num_hidden_layers": 27, "num_attention_heads": 16, "patch_size": 14}  # fmt: skip
    damo = {"model_type": "videollama3_qwen2", "mm_projector_type": "mlp2x_gelu", "vision_encoder_config": vision, **text}
    return videollama3_checkpoint.native_config(damo, image_token_id=151655, video_token_id=151656)


#: where no index was found, the weight names are derived from the model's own public code (each folder's
#: SOURCES says how) for the structure given here: folder -> the config the family's model class is built from
DERIVED: dict[str, Callable[[], object]] = {
    "DAMO-NLP-SG__VideoLLaMA3-2B": lambda: videollama3_structure(  # Qwen2.5-1.5B: tied embeddings, no lm_head tensor
        {"hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28, "num_attention_heads": 12,
         "num_key_value_heads": 2, "vocab_size": 151936, "tie_word_embeddings": True}),
    "DAMO-NLP-SG__VideoLLaMA3-7B": lambda: videollama3_structure(  # Qwen2.5-7B
        {"hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28, "num_attention_heads": 28,
         "num_key_value_heads": 4, "vocab_size": 152064, "tie_word_embeddings": False}),
}  # fmt: skip


def not_found(checkpoint: Checkpoint) -> set[str]:
    record = NOT_FOUND[checkpoint.folder.name]
    return set(checkpoint.files) if ALL in record else set(record)


def checkpoint_id(checkpoint: Checkpoint) -> str:
    return checkpoint.folder.name


# ----- the record --------------------------------------------------------------------------------


def test_every_checkpoint_has_a_record():
    assert sorted(NOT_FOUND) == sorted(c.folder.name for c in CHECKPOINTS)
    assert {p.name for p in REAL.iterdir()} <= set(NOT_FOUND), "a folder under real_layouts/ that no Checkpoint names"


@pytest.mark.parametrize("checkpoint", CHECKPOINTS, ids=checkpoint_id)
def test_folder_holds_exactly_what_the_record_says(checkpoint):
    """Present files = expected files - NOT_FOUND, each named in SOURCES; nothing recorded as missing is present."""
    missing = not_found(checkpoint)
    assert missing <= set(checkpoint.files), f"NOT_FOUND names files {checkpoint.hub_id} is not expected to have"
    present = {p.name for p in checkpoint.folder.iterdir()} - {"SOURCES"} if checkpoint.folder.is_dir() else set()
    assert present == set(checkpoint.files) - missing
    if present:
        assert checkpoint.adapter is not None, f"{checkpoint.hub_id} has real files but no family checks run on them"
        sources = checkpoint.path("SOURCES").read_text()
        assert checkpoint.hub_id in sources
        assert all(name in sources for name in present), "every kept file says where it came from"
    if checkpoint.folder.name in DERIVED:
        assert NAMES in present and "derived" in checkpoint.path("SOURCES").read_text().lower()


def cases(*needed: str, family: type | tuple[type, ...] | None = None):
    """The checkpoints (of ``family``, or of one of several; default any) that hold ``needed``; the
    others' missing files are in NOT_FOUND, which the test above holds the folders to."""
    families = family if isinstance(family, tuple) else (family,)
    return [
        pytest.param(c, id=checkpoint_id(c))
        for c in CHECKPOINTS
        if c.adapter is not None and c.has(*needed) and (family is None or c.adapter in families)
    ]


# ----- helpers ------------------------------------------------------------------------------------


def bare_adapter(checkpoint: Checkpoint, **model_args):
    """The family's adapter with its model_args parsed, before ``load``: what runs before any weight loads."""
    cls = checkpoint.adapter
    adapter = object.__new__(cls)
    adapter.args = parse_model_args(cls.model_args_spec(), {"pretrained": str(checkpoint.folder), **model_args}, cls.MODEL_ID)
    return adapter


def checked_adapter(checkpoint: Checkpoint, **model_args):
    """``bare_adapter`` after its pre-load checks, as ``__init__`` runs them before ``knockout_layers`` is read."""
    adapter = bare_adapter(checkpoint, **model_args)
    adapter.check_args()
    return adapter


@dataclass(frozen=True)
class Loading:
    """What a family's ``load`` builds from a checkpoint: the model class, the key mapping it passes to
    ``from_pretrained`` (transformers adds its own conversions for the model's types), and the
    config the class is built from, made from the adapter's pre-load config."""

    model_class: type
    key_mapping: dict[str, str] | None = None
    model_config: Callable = lambda config: config


LOADING = {
    LlavaHfTextdom: Loading(LlavaHfTextdom.MODEL_CLASS),
    Qwen25VLTextdom: Loading(Qwen2_5_VLForConditionalGeneration),
    KimiVLTextdom: Loading(Kimi_K25ForConditionalGeneration, kimi_checkpoint.KEY_MAPPING, kimi_checkpoint.native_config),
    # DAMO's layout (the names here); the native -HF layout loads without a mapping
    VideoLlama3Textdom: Loading(VideoLlama3ForConditionalGeneration, videollama3_checkpoint.DAMO_KEY_MAPPING),
    LlavaNextTextdom: Loading(LlavaNextTextdom.MODEL_CLASS),
    Qwen2AudioTextdom: Loading(Qwen2AudioForConditionalGeneration),
}
#: the families whose model class loads the whole checkpoint; ChatTS and GraphGPT load a plain language
#: model plus their own encoder, and have their own checks below
WHOLE_MODEL = tuple(LOADING)


@lru_cache(maxsize=None)
def meta_model(checkpoint: Checkpoint):
    """The family's model class built from the real config on the meta device (once per checkpoint)."""
    loading = LOADING[checkpoint.adapter]
    if checkpoint.folder.name in DERIVED:
        config = DERIVED[checkpoint.folder.name]()
    else:
        config = loading.model_config(bare_adapter(checkpoint).checkpoint_config())
    with torch.device("meta"):
        return loading.model_class(config)


@dataclass
class Filled:
    """The checkpoint tensors that land on one model key, and the conversion that puts them there."""

    sources: list[str]
    converter: WeightConverter | None = None


def filled_keys(model, checkpoint_names: list[str], key_mapping: dict[str, str] | None) -> dict[str, Filled]:
    """model key -> the checkpoint tensors ``from_pretrained(key_mapping=...)`` loads into it: the user
    mapping, then transformers' own renamings and at most one converter per key, as the loader applies
    them. A converter with several targets (a fused qkv split) fills each of them from the one tensor;
    one with a ``MergeModulelist`` (per-expert matrices stacked) fills its target from many."""
    transforms = get_model_conversion_mapping(model, key_mapping)
    renamings = [t for t in transforms if isinstance(t, WeightRenaming)]
    converters = [t for t in transforms if isinstance(t, WeightConverter)]
    state = model.state_dict()
    filled: dict[str, Filled] = defaultdict(lambda: Filled([]))
    for name in checkpoint_names:
        renamed, pattern = rename_source_key(name, renamings, converters, model.base_model_prefix, state)
        converter = None if pattern is None else next(c for c in converters if pattern in c.source_patterns)
        targets = [renamed]
        if converter is not None and len(converter.target_patterns) > 1:
            first = converter.target_patterns[0]  # the loader names the key by the first target
            targets = [renamed.replace(first, target) for target in converter.target_patterns]
        for target in targets:
            filled[target].sources.append(name)
            filled[target].converter = converter
    return dict(filled)


def load_report(model, filled: dict[str, Filled]) -> LoadStateDictInfo:
    """Missing and unexpected keys as ``from_pretrained`` reports them, after the model's own exceptions
    (e.g. the per-layer ``rotary_emb.inv_freq`` buffers older checkpoints carry, which it drops) and its
    weight tying (a tied pair needs one of its two tensors)."""
    expected = set(model.state_dict())
    info = LoadStateDictInfo(
        missing_keys=expected - set(filled), unexpected_keys=set(filled) - expected, mismatched_keys=set(),
        error_msgs=[], conversion_errors={}, skipped_pp_keys=set(),
    )  # fmt: skip
    model._adjust_missing_and_unexpected_keys(info)
    for target, source in model.all_tied_weights_keys.items():
        if {target, source} & set(filled):
            info.missing_keys -= {target, source}
    return info


# ----- config translation ------------------------------------------------------------------------


def model_type(config) -> str:
    return config["model_type"] if isinstance(config, dict) else config.model_type


def prunes(adapter_class: type) -> bool:
    return any(arg.name == "prune_ratio" for arg in adapter_class.model_args_spec())


@pytest.mark.parametrize("checkpoint", cases("config.json", family=WHOLE_MODEL))
def test_config_translation_accepts_the_real_config(checkpoint):
    """The adapter's pre-load checks pass on the real config, pruning included where the family prunes,
    and the model class it loads into accepts the translated config."""
    raw = checkpoint.json("config.json")
    adapter = bare_adapter(checkpoint, **({"prune_ratio": 0.5} if prunes(checkpoint.adapter) else {}))
    adapter.check_args()  # raises a UsageError on a config it cannot load or prune
    assert model_type(adapter.checkpoint_config()) == raw["model_type"] == checkpoint.adapter.MODEL_TYPE
    assert meta_model(checkpoint).config.get_text_config().num_hidden_layers > 0  # the class takes the translation


@pytest.mark.parametrize("checkpoint", cases("config.json", family=WHOLE_MODEL))
def test_knockout_layers_range_is_the_real_depth(checkpoint):
    """knockout_layers is checked (before any weight loads) against the layers the real model has."""
    depth = len(meta_model(checkpoint).model.language_model.layers)
    assert bare_adapter(checkpoint, knockout_layers=str(depth - 1))._knockout_layers() == frozenset({depth - 1})
    with pytest.raises(UsageError, match="knockout_layers"):
        bare_adapter(checkpoint, knockout_layers=str(depth))._knockout_layers()


# ----- weight names --------------------------------------------------------------------------------


@pytest.mark.parametrize("checkpoint", cases(NAMES))
def test_meta_model_has_exactly_the_real_weight_names(checkpoint):
    """From the real index's names, or (DERIVED) the names the model's own code gives the published structure."""
    model = meta_model(checkpoint)
    names = checkpoint.path(NAMES).read_text().split()
    filled = filled_keys(model, names, LOADING[checkpoint.adapter].key_mapping)
    report = load_report(model, filled)
    assert not report.unexpected_keys, f"checkpoint tensors the model has no place for: {sorted(report.unexpected_keys)[:10]}"
    assert not report.missing_keys, f"model weights the checkpoint does not fill: {sorted(report.missing_keys)[:10]}"
    state = model.state_dict()
    for key, fill in filled.items():
        if key not in state:
            continue  # dropped by the loader's own exceptions (checked above)
        merges = fill.converter is not None and any(isinstance(op, MergeModulelist) for op in fill.converter.operations)
        # a stacked target takes one tensor per stacked module and source pattern; any other key exactly one
        count = len(fill.converter.source_patterns) * state[key].shape[0] if merges else 1
        assert len(fill.sources) == count, f"{key} is filled from {len(fill.sources)} checkpoint tensors, not {count}"


# ----- LLaVA: tokens, template, preprocessing ------------------------------------------------------


def token_table(checkpoint: Checkpoint) -> dict[int, str]:
    """id -> content of the tokenizer's added tokens, checked against added_tokens.json."""
    decoder = {int(i): entry["content"] for i, entry in checkpoint.json("tokenizer_config.json")["added_tokens_decoder"].items()}
    if checkpoint.has("added_tokens.json"):
        for content, i in checkpoint.json("added_tokens.json").items():
            assert decoder[i] == content
    return decoder


def llava_processor(checkpoint: Checkpoint, chat_template: str | None):
    """LlavaProcessor with the checkpoint's own image-processor and processor settings.

    Its tokenizer is the tiny one (the real tokenizer.json is not kept) with the real image token;
    the prompts compared here are strings, so the vocabulary does not matter."""
    from transformers import LlavaProcessor
    from transformers.models.clip import CLIPImageProcessorPil

    from lmms_textdom.tiny.tokenizer import build_tokenizer

    settings = {k: v for k, v in checkpoint.json("processor_config.json").items() if k != "processor_class"}
    image = {k: v for k, v in checkpoint.json("preprocessor_config.json").items() if k not in ("image_processor_type", "processor_class")}
    tokenizer = build_tokenizer([settings["image_token"]])
    return LlavaProcessor(image_processor=CLIPImageProcessorPil(**image), tokenizer=tokenizer, chat_template=chat_template, **settings)


LLAVA_TOKENS = ("config.json", "tokenizer_config.json", "added_tokens.json", "special_tokens_map.json", "generation_config.json", "processor_config.json")


@pytest.mark.parametrize("checkpoint", cases(*LLAVA_TOKENS, family=LlavaHfTextdom))
def test_llava_special_tokens(checkpoint):
    """The image class is ``config.image_token_id``; the processor writes ``image_token``: one token, one id.
    Generation stops at ``generation_config.eos_token_id`` and pads with its pad id."""
    config = bare_adapter(checkpoint).checkpoint_config()
    tokens = token_table(checkpoint)
    special = checkpoint.json("special_tokens_map.json")
    generation = checkpoint.json("generation_config.json")
    assert tokens[config.image_token_id] == checkpoint.json("processor_config.json")["image_token"] == "<image>"
    assert config.image_token_id < config.get_text_config().vocab_size  # the placeholder has an embedding row
    assert tokens[generation["eos_token_id"]] == special["eos_token"]["content"] == checkpoint.json("tokenizer_config.json")["eos_token"]
    assert tokens[generation["bos_token_id"]] == special["bos_token"]["content"]
    assert tokens[generation["pad_token_id"]] == tokens[config.pad_token_id] == special["pad_token"]["content"]


@pytest.mark.parametrize("checkpoint", cases("chat_template.jinja", "processor_config.json", "preprocessor_config.json", family=LlavaHfTextdom))
@pytest.mark.parametrize("images", [0, 1, 2])
def test_llava_real_chat_template_renders_the_adapters_prompt(checkpoint, images):
    """The adapter's prompt through the real template equals its fallback for template-less checkpoints,
    and the tiny LLaVA's template (every CPU test) renders the same text."""
    from lmms_textdom.tiny.llava import CHAT_TEMPLATE as TINY_TEMPLATE

    template = checkpoint.path("chat_template.jinja").read_text()
    if checkpoint.has("chat_template.json"):
        assert checkpoint.json("chat_template.json")["chat_template"] == template
    question = "Which option is correct?\nA. one\nB. two"
    adapter = bare_adapter(checkpoint)
    rendered = {}
    for name, chat_template in (("real", template), ("fallback", None), ("tiny", TINY_TEMPLATE)):
        adapter.processor = llava_processor(checkpoint, chat_template)
        rendered[name] = adapter.prompt(question, images)
    assert rendered["real"] == FALLBACK_PROMPT.format(images="<image>\n" * images, text=question)
    assert rendered["fallback"] == rendered["real"] == rendered["tiny"]


@pytest.mark.parametrize("checkpoint", cases("config.json", "processor_config.json", "preprocessor_config.json", family=LlavaHfTextdom))
def test_llava_processor_expands_an_image_to_what_the_tower_gives(checkpoint):
    """With the real settings one image becomes (336/14)^2 = 576 placeholders; the tower built from the real
    config gives as many patch features (its [CLS] dropped by strategy 'default', as pruning needs)."""
    config = bare_adapter(checkpoint).checkpoint_config()
    processor = llava_processor(checkpoint, None)
    inputs = processor(text=["USER: <image>\nWhat? ASSISTANT:"], images=[Image.new("RGB", (500, 375), "gray")], return_tensors="pt")
    vision = config.vision_config
    assert tuple(inputs["pixel_values"].shape[-2:]) == (vision.image_size, vision.image_size)
    patches = (vision.image_size // vision.patch_size) ** 2
    assert int((inputs["input_ids"] == processor.image_token_id).sum()) == patches == 576  # tiny vocabulary's id
    tower = meta_model(checkpoint).model.vision_tower.embeddings
    assert tower.num_positions == patches + 1  # [CLS] + patches: what ClsAttentionCapture scores
    assert vision.model_type in TOWERS_WITH_CLS and config.vision_feature_select_strategy == "default"


@pytest.mark.parametrize("checkpoint", cases("processor_config.json", "preprocessor_config.json", family=LlavaHfTextdom))
def test_tiny_llava_processes_as_the_real_checkpoint(checkpoint):
    """The tiny LLaVA behind every CPU test uses the real checkpoint's processing rules (its sizes are its own)."""
    from lmms_textdom.tiny.llava import build_llava

    _, tiny = build_llava(num_layers=1)
    real = checkpoint.json("preprocessor_config.json")
    for key in ("image_mean", "image_std", "resample", "do_center_crop", "do_normalize", "do_rescale", "rescale_factor", "do_convert_rgb"):
        assert getattr(tiny.image_processor, key) == pytest.approx(real[key]), key
    settings = checkpoint.json("processor_config.json")
    assert tiny.num_additional_image_tokens == settings["num_additional_image_tokens"]
    assert tiny.vision_feature_select_strategy == settings["vision_feature_select_strategy"]
    assert tiny.image_token == settings["image_token"]


# ----- Qwen2.5-VL: the constants the inputs are built with -----------------------------------------


@pytest.mark.parametrize("checkpoint", cases("config.json", family=Qwen25VLTextdom))
def test_qwen_input_constants_follow_the_real_vision_config(checkpoint):
    """The adapter builds patches and video budgets itself: 28 px merged tokens, frame pairs."""
    vision = checkpoint.json("config.json")["vision_config"]
    merged_side = vision["patch_size"] * vision["spatial_merge_size"]
    assert MIN_FRAME_PIXELS == merged_side**2
    assert qwen_inputs.FRAME_FACTOR == vision["temporal_patch_size"]
    for budget in (qwen_inputs.VIDEO_MIN_PIXELS, qwen_inputs.VIDEO_MAX_PIXELS):
        assert budget % merged_side**2 == 0
    # the flat 4.x config.json is translated into the nested 5.x config: the placeholder ids the model fills survive
    config, raw = meta_model(checkpoint).config, checkpoint.json("config.json")
    assert (config.image_token_id, config.video_token_id) == (raw["image_token_id"], raw["video_token_id"])


# ----- Kimi-VL: the constants the native model and the image rules take from the real config -------


@pytest.mark.parametrize("checkpoint", cases("config.json", family=KimiVLTextdom))
def test_kimi_translation_keeps_the_real_vision_and_token_constants(checkpoint):
    """The placeholder the adapter expands is the one the model fills, and the image rules cut and merge
    patches as the real MoonViT does (the adapter's defaults apply where preprocessor_config.json is silent)."""
    from lmms_textdom.models.kimi_vl.images import KimiImageRules

    raw = checkpoint.json("config.json")
    native = meta_model(checkpoint).config
    assert native.image_token_id == raw["media_placeholder_token_id"] < raw["text_config"]["vocab_size"]
    vision = raw["vision_config"]
    assert native.vision_config.patch_size == KimiImageRules().patch_size == vision["patch_size"]
    assert list(native.vision_config.merge_kernel_size) == list(KimiImageRules().merge_kernel_size) == vision["merge_kernel_size"]
    # the learned position table the native tower interpolates is the real one (64 x 64)
    table = meta_model(checkpoint).model.vision_tower.patch_embed.pos_emb.position_embeddings
    assert tuple(table.shape[:2]) == (vision["init_pos_emb_height"], vision["init_pos_emb_width"])
    # the language model's numbers survive the move to the native deepseek_v3 config (rope and routing included)
    text, real = native.text_config, raw["text_config"]
    assert text.rope_parameters["rope_theta"] == real["rope_theta"] and real["rope_scaling"] is None
    for key in ("pad_token_id", "n_routed_experts", "num_experts_per_tok", "first_k_dense_replace", "routed_scaling_factor",
                "kv_lora_rank", "q_lora_rank", "qk_rope_head_dim", "n_group", "topk_group", "norm_topk_prob", "rms_norm_eps",
                "max_position_embeddings", "num_hidden_layers", "vocab_size"):  # fmt: skip
        assert getattr(text, key) == real[key], key


# ----- LLaVA-NeXT: the any-resolution grid and the stop tokens ---------------------------------------


@pytest.mark.parametrize("checkpoint", cases("config.json", family=LlavaNextTextdom))
def test_llava_next_tiles_are_the_towers_image_size(checkpoint):
    """Every any-resolution grid is whole tiles of the tower's 336 px input, each tile 576 patches after
    the [CLS] the pruning scores (strategy default), and the newline row vector exists for the unpadded grid."""
    raw = checkpoint.json("config.json")
    vision = raw["vision_config"]
    assert all(h % vision["image_size"] == 0 and w % vision["image_size"] == 0 for h, w in raw["image_grid_pinpoints"])
    model = meta_model(checkpoint)
    assert model.model.vision_tower.embeddings.num_positions == (vision["image_size"] // vision["patch_size"]) ** 2 + 1
    assert raw["use_image_newline_parameter"] and tuple(model.model.image_newline.shape) == (model.config.text_config.hidden_size,)
    assert model.config.image_token_id == raw["image_token_index"] < raw["text_config"]["vocab_size"]


@pytest.mark.parametrize("checkpoint", cases("config.json", "generation_config.json", family=LlavaNextTextdom))
def test_llava_next_generation_config_agrees_with_the_model_config(checkpoint):
    """Generation stops at </s> (2), the id the adapter reads from the loaded generation config, and a pad
    id, where the file sets one, is the language model's own; where it sets none (the mistral release on
    main) the model config has none either, so the adapter pads with the tokenizer's pad token."""
    from transformers import GenerationConfig

    generation, text = checkpoint.json("generation_config.json"), meta_model(checkpoint).config.text_config
    loaded = GenerationConfig.from_pretrained(checkpoint.folder)  # what from_pretrained attaches to the model
    assert (loaded.bos_token_id, loaded.eos_token_id) == (text.bos_token_id, text.eos_token_id) == (1, 2)
    if "pad_token_id" in generation:
        assert loaded.pad_token_id == generation["pad_token_id"] == text.pad_token_id
    else:
        assert loaded.pad_token_id is None and text.pad_token_id is None
        assert "pad_token_id" not in checkpoint.json("config.json")


# ----- Qwen2-Audio: the feature extractor's constants and the tower's frame count ----------------------


def whisper_extractor(checkpoint: Checkpoint):
    from transformers import WhisperFeatureExtractor

    settings = {k: v for k, v in checkpoint.json("preprocessor_config.json").items() if k not in ("feature_extractor_type", "processor_class")}
    return WhisperFeatureExtractor(**settings)


@pytest.mark.parametrize("checkpoint", cases("config.json", "preprocessor_config.json", family=Qwen2AudioTextdom))
def test_qwen2_audio_clips_and_tokens_follow_the_real_constants(checkpoint):
    """16 kHz clips cut at 30 s (the adapter's record of seconds), one audio token per 40 ms (750 per clip),
    as many as the tower's 1500 positions pooled by 2; the adapter's shortest-clip rule (2 x hop + 1
    samples) is the real extractor's boundary between no token and one."""
    raw, extractor = checkpoint.json("config.json"), whisper_extractor(checkpoint)
    assert checkpoint.json("preprocessor_config.json")["processor_class"] == "Qwen2AudioProcessor"
    assert extractor.sampling_rate == 16000 and extractor.n_samples == extractor.chunk_length * extractor.sampling_rate
    assert extractor.feature_size == raw["audio_config"]["num_mel_bins"]
    tower = meta_model(checkpoint).model.audio_tower
    full = torch.tensor([extractor.nb_max_frames])
    _, tokens = tower._get_feat_extract_output_lengths(full)
    assert int(tokens) * 2 == raw["audio_config"]["max_source_positions"] == tower.embed_positions.num_embeddings
    assert int(tokens) / extractor.chunk_length == 25  # tokens per second, as the adapter's docstring says
    shortest = 2 * extractor.hop_length + 1
    counts = []
    for samples in (shortest - 1, shortest):
        mask = extractor(np.zeros(samples, dtype=np.float32), sampling_rate=16000, return_attention_mask=True)["attention_mask"]
        counts.append(int(tower._get_feat_extract_output_lengths(torch.tensor(mask).sum(-1))[1]))
    assert counts == [0, 1]
    assert meta_model(checkpoint).config.audio_token_index == raw["audio_token_index"] < raw["text_config"]["vocab_size"]


# ----- GraphGPT and ChatTS: a plain language model read from the real config -------------------------


@pytest.mark.parametrize("checkpoint", cases("config.json", family=GraphGPTTextdom))
def test_graphgpt_reads_the_real_config(checkpoint):
    """The GraphLlama config passes the adapter's checks and becomes a Llama config with its linear RoPE
    scaling (x4, the 16k context of vicuna-7b-v1.5-16k) and rows for the three graph tokens (32000-32002);
    knockout_layers is checked against its 32 layers."""
    raw = checkpoint.json("config.json")
    adapter = bare_adapter(checkpoint)
    adapter.check_args()
    llama = llama_config(adapter.checkpoint_config())
    assert llama.num_hidden_layers == raw["num_hidden_layers"] == 32
    assert llama.rope_parameters["rope_type"] == raw["rope_scaling"]["type"] == "linear"
    assert llama.rope_parameters["factor"] == raw["rope_scaling"]["factor"] == 4.0
    with torch.device("meta"):
        embeddings = LlamaForCausalLM(llama).get_input_embeddings()
    assert embeddings.num_embeddings == raw["vocab_size"] == 32003  # <g_patch>, <g_start>, <g_end> have rows
    assert checked_adapter(checkpoint, knockout_layers="31")._knockout_layers() == frozenset({31})
    with pytest.raises(UsageError, match="knockout_layers"):
        checked_adapter(checkpoint, knockout_layers="32")._knockout_layers()


@pytest.mark.parametrize("checkpoint", cases("config.json", family=ChatTSTextdom))
def test_chatts_reads_the_real_config(checkpoint):
    """The config is recognised as its release (patch 16 and no position embedding = original), its Qwen2.5-14B
    language model keeps the real depth and width, and knockout_layers is checked against its 48 layers.
    The config's ts_token indices are not used: the original release has them swapped (<ts> is 151665)."""
    raw = checkpoint.json("config.json")
    adapter = bare_adapter(checkpoint)
    adapter.check_args()
    chatts = adapter.chatts
    assert chatts.release == ("0801" if raw["model_type"] == "chatts" else "original")
    assert chatts.patch_size == raw["ts"]["patch_size"] and chatts.ts["num_layers"] == raw["ts"]["num_layers"]
    text = chatts.language_model
    assert (text.num_hidden_layers, text.hidden_size, text.vocab_size) == (raw["num_hidden_layers"], raw["hidden_size"], raw["vocab_size"])
    assert text.hidden_size == raw["ts"]["hidden_size"]
    assert {"ts_token_start_index", "ts_token_end_index"} <= set(WRAPPER_KEYS)
    if chatts.release == "original":
        assert raw["ts_token_start_index"] == raw["ts_token_end_index"] + 1  # swapped: why the markers are looked up by string
    depth = raw["num_hidden_layers"]
    assert checked_adapter(checkpoint, knockout_layers=str(depth - 1))._knockout_layers() == frozenset({depth - 1})
    with pytest.raises(UsageError, match="knockout_layers"):
        checked_adapter(checkpoint, knockout_layers=str(depth))._knockout_layers()
