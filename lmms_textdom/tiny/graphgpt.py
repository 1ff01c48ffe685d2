"""A tiny GraphGPT checkpoint in the real layout, and a tiny GraphCLIP-GT tower file.

``save_graphgpt(path)`` writes what ``Jiabin99/GraphGPT-7B-mix-all`` holds: a GraphLlama
config.json (Llama fields, linear x4 ``rope_scaling``, the graph fields), the tokenizer files as
the real checkpoint ships them (a sentencepiece ``tokenizer.model`` trained here with Llama's
normalizer settings, Vicuna-7B v1.5's ``tokenizer_config.json`` with ``legacy: false``, GraphGPT's
``special_tokens_map.json`` and ``added_tokens.json`` with ``<g_patch>``, ``<g_start>``, ``<g_end>``
right after the sentencepiece vocabulary; no ``tokenizer.json``), and
``pytorch_model-0000k-of-0000n.bin`` shards with an index, under the real key names: the Llama
weights, ``model.graph_projector.*`` and a float16 ``model.graph_tower.*``.

``save_graphclip(path)`` writes ``clip_gt_arxiv_pub/``: the GraphCLIP config.json and a
``clip_gt_arxiv_pub.pkl`` state dict (``gnn.*``, a text-encoder stand-in and ``logit_scale``), as
GraphGPT's evaluation reads it.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import torch
from torch import nn
from transformers import LlamaForCausalLM

from lmms_textdom.models.graphgpt.checkpoint import GRAPHCLIP_FILE, llama_config
from lmms_textdom.models.graphgpt.prompt import END, PATCH, START, SYSTEM
from lmms_textdom.models.graphgpt.tokenizer import load_tokenizer
from lmms_textdom.models.graphgpt.tower import GraphTransformer, TowerConfig
from lmms_textdom.tiny.common import instantiate, language_model_fields
from lmms_textdom.tiny.graph_data import human_turn, link_items
from lmms_textdom.tiny.tokenizer import CORPUS

#: the tiny tower: the real one's layout with width 16 (real: 128) and 2 layers (real: 3), 8 heads
TINY_TOWER = TowerConfig(gnn_input=16, att_d_model=16, gnn_output=16, gt_layers=2, head=8, att_norm=True, if_pos=False)
ROPE_SCALING = {"type": "linear", "factor": 4.0}
#: the sentencepiece vocabulary (real: 32000); the three graph tokens follow it, as 32000-32002 do
SENTENCEPIECE_VOCAB = 400


def _added_token(content: str) -> dict:
    return {"__type": "AddedToken", "content": content, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False}


# Vicuna-7B v1.5's tokenizer_config.json, which GraphGPT's checkpoint carries over from its base: the
# slow LlamaTokenizer, BOS added, and legacy: false (which transformers 4.31's fast conversion ignored)
TOKENIZER_CONFIG = {
    "add_bos_token": True,
    "add_eos_token": False,
    "bos_token": _added_token("<s>"),
    "clean_up_tokenization_spaces": False,
    "eos_token": _added_token("</s>"),
    "legacy": False,
    "model_max_length": 4096,
    "pad_token": None,
    "padding_side": "right",
    "sp_model_kwargs": {},
    "tokenizer_class": "LlamaTokenizer",
    "unk_token": _added_token("<unk>"),
}
# GraphGPT-7B-mix-all's special_tokens_map.json: training set the pad token to <unk>
SPECIAL_TOKENS_MAP = {
    "bos_token": {k: v for k, v in _added_token("<s>").items() if k != "__type"},
    "eos_token": {k: v for k, v in _added_token("</s>").items() if k != "__type"},
    "pad_token": "<unk>",
    "unk_token": {k: v for k, v in _added_token("<unk>").items() if k != "__type"},
}


def save_tokenizer(path: Path, vocab_size: int = SENTENCEPIECE_VOCAB) -> None:
    """The four tokenizer files of the real checkpoint; the sentencepiece model has Llama's settings
    (BPE, byte fallback, digits split, identity normalizer, dummy prefix, spaces kept as they are)."""
    import sentencepiece

    prompts = [human_turn("pubmed", "std", "paper 0"), link_items(1, seed=0)[0]["conversations"][0]["value"]]
    # no newline in the corpus: Llama's vocabulary has none either, "\n" is the byte piece <0x0A>
    corpus = [*CORPUS, SYSTEM, *(p.replace("<graph>", "").replace("\n", " ") for p in prompts)]
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus * 3), model_writer=model, vocab_size=vocab_size, model_type="bpe", byte_fallback=True,
        split_digits=True, normalization_rule_name="identity", add_dummy_prefix=True, remove_extra_whitespaces=False,
        allow_whitespace_only_pieces=True, character_coverage=1.0, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        num_threads=1, minloglevel=2,
    )  # fmt: skip
    (path / "tokenizer.model").write_bytes(model.getvalue())
    (path / "tokenizer_config.json").write_text(json.dumps(TOKENIZER_CONFIG, indent=2))
    (path / "special_tokens_map.json").write_text(json.dumps(SPECIAL_TOKENS_MAP, indent=2))
    (path / "added_tokens.json").write_text(json.dumps({token: vocab_size + i for i, token in enumerate((PATCH, START, END))}))


def tiny_tower(seed: int, config: TowerConfig = TINY_TOWER) -> GraphTransformer:
    torch.manual_seed(seed)
    tower = GraphTransformer(config)
    with torch.no_grad():  # LayerNorm starts at identity: give it weights that a wrong key would betray
        for layer in tower.gtLayers:
            layer.norm.weight.uniform_(0.5, 1.5)
            layer.norm.bias.uniform_(-0.2, 0.2)
    return tower


def graphgpt_config(tok, num_layers: int, hidden_size: int, tower: TowerConfig) -> dict:
    fields = language_model_fields(tok, num_layers, hidden_size, 4, 4, 0.2)
    return {
        **fields,
        "max_position_embeddings": 4096,
        "max_sequence_length": 16384,
        "rope_scaling": dict(ROPE_SCALING),
        "rms_norm_eps": 1e-5,
        "tie_word_embeddings": False,
        "model_type": "GraphLlama",
        "architectures": ["GraphLlamaForCausalLM"],
        "torch_dtype": "float32",
        "graph_hidden_size": tower.gnn_output,
        "graph_tower": "clip_gt_arxiv_pub",
        "pretrain_graph_model_path": "./clip_gt_arxiv_pub",
        "graph_select_layer": -2,
        "use_graph_proj": True,
        "use_graph_start_end": True,
        "tune_graph_mlp_adapter": True,
    }


def save_graphgpt(path: str | Path, num_layers: int = 4, hidden_size: int = 32, seed: int = 0, tower_seed: int = 1, shards: int = 2) -> Path:
    """Write the checkpoint folder; the tower copy inside it comes from ``tower_seed`` (None: no copy)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    save_tokenizer(path)
    tok = load_tokenizer(str(path))
    config = graphgpt_config(tok, num_layers, hidden_size, TINY_TOWER)
    model = instantiate(LlamaForCausalLM, llama_config(config), tok, seed, "sdpa")
    torch.manual_seed(seed + 100)
    projector = nn.Linear(TINY_TOWER.gnn_output, hidden_size)
    weights = dict(model.state_dict())
    weights.update({f"model.graph_projector.{k}": v for k, v in projector.state_dict().items()})
    if tower_seed is not None:  # saved in float16, as GraphGPT's training casts the tower
        weights.update({f"model.graph_tower.{k}": v.half() for k, v in tiny_tower(tower_seed).state_dict().items()})
    names = list(weights)
    per_shard = -(-len(names) // shards)
    weight_map = {}
    for number in range(shards):
        shard = f"pytorch_model-{number + 1:05d}-of-{shards:05d}.bin"
        chunk = names[number * per_shard : (number + 1) * per_shard]
        torch.save({k: weights[k].contiguous().clone() for k in chunk}, path / shard)
        weight_map.update(dict.fromkeys(chunk, shard))
    total = sum(v.numel() * v.element_size() for v in weights.values())
    (path / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=1))
    (path / "config.json").write_text(json.dumps(config, indent=1))
    return path


def save_graphclip(path: str | Path, seed: int = 1, config: TowerConfig = TINY_TOWER) -> Path:
    """Write ``path`` (a ``clip_gt_arxiv_pub`` folder) with the tower of ``seed``; returns the folder."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = {f"gnn.{k}": v.clone() for k, v in tiny_tower(seed, config).state_dict().items()}
    torch.manual_seed(seed + 7)
    state.update({"transformer.resblocks.0.attn.in_proj_weight": torch.randn(24, 8), "token_embedding.weight": torch.randn(10, 8)})
    state["logit_scale"] = torch.tensor(2.6592)
    torch.save(state, path / GRAPHCLIP_FILE)
    fields = {f: getattr(config, f) for f in config.__dataclass_fields__}
    (path / "config.json").write_text(json.dumps({"gnn_type": "gt", **fields, "transformer_width": 8, "context_length": 128}, indent=1))
    return path
