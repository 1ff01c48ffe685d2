"""``graphgpt_textdom``: GraphGPT checkpoints (``Jiabin99/GraphGPT-7B-mix-all``, model_type ``GraphLlama``).

The language model loads into transformers' ``LlamaForCausalLM`` from the checkpoint's own files
(config translated, linear RoPE scaling kept); the projector comes from the checkpoint; the graph
tower is ``GraphTransformer`` with the GraphCLIP-GT weights GraphGPT's evaluation uses (model_arg
``graph_tower``), else the checkpoint's own copy. Graphs come from the task's ``doc_to_visual`` as
``{"x": [nodes, width] features, "edge_index": [2, edges] local}`` items, one per ``<graph>``
marker in the task's text, in order. The tower and projector run in the language model's dtype, as
upstream runs them in its float16.
"""

from __future__ import annotations

import numpy as np
import torch
from loguru import logger
from torch import nn

from lmms_textdom.core.errors import UsageError
from lmms_textdom.models.args import NONTEXT_REPEAT, Arg
from lmms_textdom.models.base import Prepared, Request, TextdomModel
from lmms_textdom.models.placement import graph_item, item_positions, tensor_list
from lmms_textdom.models.graphgpt.checkpoint import (
    PROJECTOR, TOWER, GraphGPTLanguageModel, llama_config, read_config, read_graphclip, read_prefixed, strip,
)  # fmt: skip
from lmms_textdom.models.graphgpt.inputs import GRAPH_CLASS, GraphTokens, build_inputs, tokenize
from lmms_textdom.models.graphgpt.prompt import END, GRAPH, PATCH, START, check_graph_count, conversation, expand_graphs
from lmms_textdom.models.graphgpt.tokenizer import load_tokenizer
from lmms_textdom.models.graphgpt.tower import GraphTransformer, TowerConfig

GRAPH_TOWER = Arg(
    "graph_tower", None,
    "GraphCLIP-GT weights for the graph tower (gnn.* of clip_gt_arxiv_pub.pkl): its folder, the .pkl, or a hub id; "
    "default: the checkpoint's own model.graph_tower.* copy",
)  # fmt: skip
FAITHFUL_LP_BUG = Arg(
    "faithful_lp_bug", False,
    "true = upstream's splice: with two graphs (link prediction) only the second one gets node features",
    kind=bool,
)  # fmt: skip
NO_PRUNING = Arg(
    "prune_ratio", 0.0, "not supported: graph nodes are not pruned (GraphGPT's tower has no [CLS] token)",
    kind=float, check=lambda r: r == 0, requirement="0: GraphGPT has no graph-token pruning; use nontext_repeat for the dilution test",
)  # fmt: skip


#: ``graph_tower`` in the records when the checkpoint's own copy runs
OWN_TOWER = "checkpoint:model.graph_tower"


def _as_tensor(value, dtype) -> torch.Tensor:
    return value.to(dtype) if isinstance(value, torch.Tensor) else torch.as_tensor(np.asarray(value), dtype=dtype)


class GraphGPTTextdom(TextdomModel):
    MODEL_ID = "graphgpt_textdom"
    DEFAULT_PRETRAINED = "Jiabin99/GraphGPT-7B-mix-all"
    FAMILY_ARGS = (GRAPH_TOWER, FAITHFUL_LP_BUG, NONTEXT_REPEAT, NO_PRUNING)
    DEFAULT_TASK = "graphgpt_eval_textdom"
    CONTEXT_PLACEHOLDERS = (GRAPH,)
    NOISE_SITES = (("tower", "x", True),)  # node features

    def checkpoint_config(self) -> dict:
        return read_config(self.args["pretrained"], self.args["revision"])

    def language_model_depth(self) -> int:
        return llama_config(self.checkpoint_config()).num_hidden_layers

    @property
    def tokenizer(self):
        return self.processor

    def load(self):
        pretrained, revision = self.args["pretrained"], self.args["revision"]
        config = self.checkpoint_config()
        # the small parts first, so that their errors come before the language model loads
        tokenizer = load_tokenizer(pretrained, revision)
        self.graph_tokens = self._graph_tokens(tokenizer, config)
        graph_weights = read_prefixed(pretrained, (PROJECTOR, TOWER), revision)
        # in the language model's dtype, as upstream runs them in its float16
        self.tower = self._load_tower(strip(graph_weights, TOWER)).to(self.device, self.dtype).eval()
        projector = self._load_projector(strip(graph_weights, PROJECTOR), config["hidden_size"])
        self.projector = projector.to(self.device, self.dtype).eval()
        model = GraphGPTLanguageModel.from_pretrained(pretrained, config=llama_config(config), **self.from_pretrained_kwargs())
        return model, tokenizer

    def _graph_tokens(self, tokenizer, config: dict) -> GraphTokens:
        ids = {t: tokenizer.convert_tokens_to_ids(t) for t in (PATCH, START, END)}
        missing = [t for t, i in ids.items() if i is None or i == tokenizer.unk_token_id]
        if missing:
            raise UsageError(f"{self.args['pretrained']}: the tokenizer has no {', '.join(missing)} token (GraphGPT's added tokens)")
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else config.get("pad_token_id", 0)
        bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else config.get("bos_token_id")
        return GraphTokens(ids[PATCH], ids[START], ids[END], pad, bos)

    def _load_tower(self, own: dict[str, torch.Tensor]) -> GraphTransformer:
        source = self.args["graph_tower"]
        if source is not None:
            weights, config = read_graphclip(source, self.args["revision"])
            # the checkpoint's copy may be stored in float16: compare at its precision
            if own and (own.keys() != weights.keys() or any(not torch.equal(own[k], weights[k].to(own[k].dtype)) for k in own)):
                logger.warning(
                    f"{self.MODEL_ID}: graph_tower={source} and the checkpoint's own model.graph_tower.* differ; "
                    f"using graph_tower={source} (as GraphGPT's evaluation does)"
                )
        elif own:
            weights, config = own, TowerConfig.from_weights(own, TowerConfig())
            logger.warning(
                f"{self.MODEL_ID}: using the checkpoint's own graph tower copy; GraphGPT's evaluation uses GraphCLIP-GT "
                "(pass graph_tower=<folder of clip_gt_arxiv_pub.pkl>)"
            )
        else:
            raise UsageError(f"{self.args['pretrained']} holds no model.graph_tower.* weights: pass graph_tower=<folder of clip_gt_arxiv_pub.pkl>")
        tower = GraphTransformer(config)
        try:
            tower.load_state_dict({k: v.float() for k, v in weights.items()})
        except RuntimeError as exc:
            raise UsageError(f"the graph tower weights do not fit a GraphCLIP-GT graph transformer: {exc}") from None
        return tower

    def _load_projector(self, weights: dict[str, torch.Tensor], hidden_size: int) -> nn.Linear:
        if set(weights) != {"weight", "bias"}:
            raise UsageError(f"{self.args['pretrained']} has no model.graph_projector.weight / .bias")
        out_size, in_size = weights["weight"].shape
        if out_size != hidden_size or in_size != self.tower.config.gnn_output:
            raise UsageError(
                f"graph_projector is {in_size} -> {out_size}, but the tower gives {self.tower.config.gnn_output} "
                f"and the language model takes {hidden_size}"
            )
        projector = nn.Linear(in_size, out_size)
        projector.load_state_dict({k: v.float() for k, v in weights.items()})
        return projector

    def settings(self) -> dict:
        tower = self.args["graph_tower"] or OWN_TOWER  # the weights the tower runs with
        return {**super().settings(), "graph_tower": tower, "faithful_lp_bug": self.args["faithful_lp_bug"]}

    @torch.inference_mode()
    def graph_features(self, graph, where: str) -> torch.Tensor:
        """One ``doc_to_visual`` graph item through the tower and the projector: one row per node."""
        if not isinstance(graph, dict) or "x" not in graph or "edge_index" not in graph:
            raise UsageError(f"{where}: expected a graph as an {{'x', 'edge_index'}} item, got {type(graph).__name__}")
        x = _as_tensor(graph["x"], self.dtype)  # upstream casts the node features to its float16 likewise
        edges = _as_tensor(graph["edge_index"], torch.long).reshape(2, -1)
        width = self.tower.config.gnn_input
        if x.dim() != 2 or x.shape[1] != width:
            raise UsageError(f"{where}: node features of shape {tuple(x.shape)}, but the graph tower takes width {width}")
        if edges.numel() and (int(edges.min()) < 0 or int(edges.max()) >= x.shape[0]):
            raise UsageError(f"{where}: the edge index refers to node {int(edges.max())} of a graph with {x.shape[0]} nodes")
        return self.projector(self.tower(x.to(self.device), edges.to(self.device)))

    def prepare(self, batch: list[Request]) -> Prepared:
        prompts, texts, features = [], [], []
        for number, request in enumerate(batch):
            where = f"request {request.doc.get('id', number)}"
            check_graph_count(request.context, len(request.visuals), where)  # before any graph is encoded
            graphs = [self.graph_features(g, where) for g in request.visuals]
            texts.append(conversation(expand_graphs(request.context, [g.shape[0] for g in graphs])))
            prompts.append(tokenize(self.tokenizer, texts[-1], self.graph_tokens))
            features.append(graphs)
        task_pieces = [r.context.split(GRAPH) for r in batch]
        with torch.inference_mode():
            inputs, classes, counts = build_inputs(
                self.model.get_input_embeddings(), prompts, features, self.graph_tokens,
                repeat=self.args["nontext_repeat"], last_graph_only=self.args["faithful_lp_bug"],
                text_parts=(texts, task_pieces, self.tokenizer),
            )  # fmt: skip
        return Prepared(inputs, classes, counts)

    def map_items(self, batch: list[Request], prepared: Prepared) -> list[list[dict]]:
        """Each graph: one position per node, named by the node ids the task gives (``node_ids``), else 0, 1, ..."""
        out = []
        for b, request in enumerate(batch):
            nodes = prepared.sample_settings[b]["graph_nodes"]
            placed = item_positions(prepared.classes, b, GRAPH_CLASS, nodes) if nodes else []
            out.append([
                graph_item(GRAPH_CLASS, tensor_list(graph.get("node_ids", range(count))), n, offsets)
                for graph, count, (n, offsets) in zip(request.visuals, nodes, placed)
            ])  # fmt: skip
        return out
