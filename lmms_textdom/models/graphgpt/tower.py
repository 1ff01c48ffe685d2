"""GraphGPT's graph tower: the graph transformer of GraphCLIP-GT (``clip_gt_arxiv_pub``), in plain torch.

Upstream semantics (HKUDS/GraphGPT ``graph_layers/graph_transformer.py``): node features go through
``W_P``, then ``gt_layers`` attention layers over the item's edges, then ``inverW_P``; every node's
output is kept (one ``<g_patch>`` position per node). In one layer each edge (row <- col) scores
``q_row . k_col`` per head with no 1/sqrt(d) scaling, clamped to [-10, 10] and exponentiated; the
scores are normalised over the edges sharing the row, the col values summed into the row, then
the residual is added and LayerNorm applied. A node with no edge as row keeps only the residual.
Parameter names follow the checkpoint (``W_P``, ``gtLayers.i.{qTrans,kTrans,vTrans,norm}``,
``inverW_P``, ``W_pos``) so its ``gnn.*`` / ``model.graph_tower.*`` weights load as they are.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch
from torch import nn

from lmms_textdom.core.errors import UsageError


@dataclass(frozen=True)
class TowerConfig:
    """The GraphCLIP config fields the tower uses (``Arxiv-PubMed-GraphCLIP-GT/config.json``)."""

    gnn_input: int = 128
    att_d_model: int = 128
    gnn_output: int = 128
    gt_layers: int = 3
    head: int = 8
    att_norm: bool = True
    if_pos: bool = False

    @classmethod
    def from_dict(cls, config: Mapping) -> "TowerConfig":
        return cls(**{k: config[k] for k in cls.__dataclass_fields__ if k in config})

    @classmethod
    def from_weights(cls, weights: Mapping[str, torch.Tensor], base: "TowerConfig") -> "TowerConfig":
        """Sizes read from the weights themselves (heads, norm and position flags from ``base``)."""
        layers = {int(k.split(".")[1]) for k in weights if k.startswith("gtLayers.")}
        if "W_P.weight" not in weights or "inverW_P.weight" not in weights or not layers:
            raise UsageError(f"graph tower weights lack W_P / gtLayers / inverW_P; got keys {sorted(weights)[:6]} ...")
        d_model, gnn_input = weights["W_P.weight"].shape
        return cls(
            gnn_input=gnn_input, att_d_model=d_model, gnn_output=weights["inverW_P.weight"].shape[0],
            gt_layers=max(layers) + 1, head=base.head, att_norm=any(".norm." in k for k in weights), if_pos=base.if_pos,
        )  # fmt: skip


class GTLayer(nn.Module):
    def __init__(self, config: TowerConfig):
        super().__init__()
        d = config.att_d_model
        self.heads = config.head
        self.qTrans = nn.Parameter(torch.empty(d, d))
        self.kTrans = nn.Parameter(torch.empty(d, d))
        self.vTrans = nn.Parameter(torch.empty(d, d))
        self.norm = nn.LayerNorm(d, eps=1e-6) if config.att_norm else None
        for weight in (self.qTrans, self.kTrans, self.vTrans):
            nn.init.xavier_uniform_(weight)

    def forward(self, embeds: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        rows, cols = edge_index
        nodes, d = embeds.shape
        edges = rows.shape[0]
        # every size given: a graph without edges (one node alone) has 0 rows here, and -1 cannot be inferred then
        shape = (edges, self.heads, d // self.heads)
        q = (embeds[rows] @ self.qTrans).view(shape)
        k = (embeds[cols] @ self.kTrans).view(shape)
        v = (embeds[cols] @ self.vTrans).view(shape)
        scores = torch.einsum("ehd,ehd->eh", q, k).clamp(-10.0, 10.0).exp()  # the same einsum as upstream (same rounding in float16)
        totals = embeds.new_zeros(nodes, self.heads).index_add_(0, rows, scores)
        weights = scores / (totals[rows] + 1e-8)  # upstream's epsilon
        messages = (weights[..., None] * v).reshape(edges, d)
        out = embeds.new_zeros(nodes, d).index_add_(0, rows, messages) + embeds
        return self.norm(out) if self.norm is not None else out


class GraphTransformer(nn.Module):
    def __init__(self, config: TowerConfig):
        super().__init__()
        self.config = config
        self.W_P = nn.Linear(config.gnn_input, config.att_d_model)
        self.gtLayers = nn.Sequential(*[GTLayer(config) for _ in range(config.gt_layers)])
        self.W_pos = nn.Parameter(torch.zeros(1, config.att_d_model))
        self.inverW_P = nn.Linear(config.att_d_model, config.gnn_output)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        """(nodes, gnn_input) features and a (2, edges) local edge index -> (nodes, gnn_output)."""
        embeds = self.W_P(x)
        if self.config.if_pos:
            embeds = embeds + self.W_pos
        for layer in self.gtLayers:  # dropout is inactive at inference
            embeds = layer(embeds, edge_index)
        return self.inverW_P(embeds)
