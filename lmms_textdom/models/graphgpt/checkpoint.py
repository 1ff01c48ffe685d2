"""Reading a GraphGPT checkpoint (``GraphLlamaForCausalLM``, no remote code) and the GraphCLIP-GT tower file.

The language model is plain Llama under the same key names, so transformers' ``LlamaForCausalLM``
loads it from the checkpoint's own files with a ``LlamaConfig`` made from its config.json (the
linear RoPE scaling kept); ``model.graph_projector.*`` and ``model.graph_tower.*`` are read here
from whichever weight file holds them.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from lmms_textdom.core.errors import UsageError
from lmms_textdom.models.checkpoint import checkpoint_file
from lmms_textdom.models.graphgpt.tower import TowerConfig

MODEL_TYPE = "GraphLlama"
PROJECTOR = "model.graph_projector."
TOWER = "model.graph_tower."
GRAPHCLIP_FILE = "clip_gt_arxiv_pub.pkl"
# (index file, single file) in the order transformers prefers them
WEIGHT_FILES = (("model.safetensors.index.json", "model.safetensors"), ("pytorch_model.bin.index.json", "pytorch_model.bin"))


class GraphGPTLanguageModel(LlamaForCausalLM):
    """transformers' LlamaForCausalLM, told that the checkpoint's graph projector and tower keys are read here."""

    _keys_to_ignore_on_load_unexpected = [f"^{re.escape(PROJECTOR)}", f"^{re.escape(TOWER)}"]


def read_config(pretrained: str, revision: str = "main") -> dict:
    config = json.loads(checkpoint_file(pretrained, "config.json", revision).read_text())
    if config.get("model_type") != MODEL_TYPE:
        raise UsageError(
            f"graphgpt_textdom loads GraphGPT checkpoints (model_type {MODEL_TYPE!r}); "
            f"{pretrained} is model_type {config.get('model_type')!r}"
        )
    return config


def llama_config(config: dict) -> LlamaConfig:
    """The language model's config: every field but the GraphLlama identity, ``rope_scaling`` included."""
    fields = {k: v for k, v in config.items() if k not in ("model_type", "architectures", "auto_map")}
    return LlamaConfig(**fields)


def _load(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    return torch.load(path, map_location="cpu", weights_only=True, mmap=True)


def read_prefixed(pretrained: str, prefixes: tuple[str, ...], revision: str = "main") -> dict[str, torch.Tensor]:
    """Every tensor of the checkpoint whose key starts with one of ``prefixes`` (only the shards holding them are read)."""
    for index_name, single_name in WEIGHT_FILES:
        index = checkpoint_file(pretrained, index_name, revision, required=False)
        if index is not None:
            weight_map = json.loads(index.read_text())["weight_map"]
            shards = sorted({f for k, f in weight_map.items() if k.startswith(prefixes)})
            break
        if checkpoint_file(pretrained, single_name, revision, required=False) is not None:
            shards = [single_name]
            break
    else:
        raise UsageError(f"pretrained={pretrained} has no model weights (model.safetensors or pytorch_model.bin, or their index)")
    found = {}
    for shard in shards:
        tensors = _load(checkpoint_file(pretrained, shard, revision))
        found.update({k: v for k, v in tensors.items() if k.startswith(prefixes)})
    return found


def strip(weights: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}


def read_graphclip(source: str, revision: str = "main") -> tuple[dict[str, torch.Tensor], TowerConfig]:
    """The tower weights (``gnn.*``) and config of a GraphCLIP-GT file: a folder, the .pkl itself, or a hub id."""
    path = Path(source).expanduser()
    if path.is_file():
        pkl, config_path = path, path.parent / "config.json"
    elif path.is_dir():
        found = sorted(path.glob("*.pkl"))  # upstream takes the folder's .pkl
        if not found:
            raise UsageError(f"graph_tower={source} is a folder without a .pkl file (expected {GRAPHCLIP_FILE})")
        pkl, config_path = found[0], path / "config.json"
    else:
        pkl = checkpoint_file(source, GRAPHCLIP_FILE, revision)
        config_path = checkpoint_file(source, "config.json", revision, required=False)
    try:
        state = torch.load(pkl, map_location="cpu", weights_only=True)
    except Exception as exc:  # not a plain state dict of tensors
        raise UsageError(f"graph_tower={source}: {pkl} is not a GraphCLIP state dict readable as plain tensors: {exc}") from exc
    gnn = strip(state, "gnn.")
    if not gnn:
        raise UsageError(f"graph_tower={source}: {pkl} has no gnn.* weights (is it the GraphCLIP-GT file {GRAPHCLIP_FILE}?)")
    base = TowerConfig.from_dict(json.loads(config_path.read_text())) if config_path and config_path.is_file() else TowerConfig()
    return gnn, TowerConfig.from_weights(gnn, base)
