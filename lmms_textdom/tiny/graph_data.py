"""Fabricated GraphGPT evaluation data in the real schema, written as local snapshots.

``write_graph_snapshot(root)`` creates ``root/Jiabin99/GraphGPT-eval-instruction/`` with the seven
instruction files (JSON lists of ``{id, graph, conversations}`` items, node classification and
link prediction as upstream lays them out) and ``root/Jiabin99/All_pyg_graph_data/`` holding the
converted node features (``graph_data_all.safetensors``), so ``LMMS_TEXTDOM_DATA=root`` makes the
tasks load them. ``write_pyg_graph_data(path)`` writes the same features as upstream's
``graph_data_all.pt``: a pickled dict of torch_geometric ``Data`` (needs torch_geometric).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from lmms_textdom.media.graphs import CONVERTED_NAME

REPO = "Jiabin99/GraphGPT-eval-instruction"
FEATURES_REPO = "Jiabin99/All_pyg_graph_data"
NODES = {"cora": 40, "pubmed": 30, "arxiv": 50}
# a few class names that overlap as substrings, as Cora's 70 do
CORA_CLASSES = ["Machine Learning", "Machine Learning Theory", "Computer Vision", "Data Mining", "Databases"]
PUBMED_CLASSES = ["Experimentally induced diabetes", "Type 1 diabetes", "Type 2 diabetes"]
ARXIV_CLASSES = [("cs.LG", "Machine Learning"), ("cs.CV", "Computer Vision and Pattern Recognition"), ("cs.DB", "Databases")]
QUESTIONS = {
    "cora": "Which of the following subcategories of computer science does this paper belong to: "
    + ", ".join(f"{i + 1}. {c}" for i, c in enumerate(CORA_CLASSES))
    + "? Directly give the full name of the most likely category of this paper.",
    "pubmed": "Which case of Type 1 diabetes, Type 2 diabetes, or Experimentally induced diabetes does this paper involve? "
    "Please give one answer of either Type 1 diabetes, Type 2 diabetes, or Experimentally induced diabetes directly.",
    "arxiv": 'Which arXiv CS sub-category does this paper belong to? Give the most likely arXiv CS sub-categories of this '
    'paper directly, in the form "cs.XX" with full name of the category.',
}
NEIGHBOURS = "and other nodes are its one-hop or multi-hop neighbors, "


def human_turn(dataset: str, variant: str, title: str) -> str:
    neighbours = NEIGHBOURS if variant == "std" else ""
    return (
        f"Given a citation graph: \n<graph>\nwhere the 0th node is the target paper, {neighbours}with the following "
        f"information: \nAbstract: the paper studies a graph . \n Title: {title} \n Question: {QUESTIONS[dataset]}"
    )


def sampled_graph(rng: np.random.Generator, num_nodes: int, target: int) -> tuple[list[int], list[list[int]]]:
    """A target and 4-9 other nodes (global ids), with local edges from neighbours to the nodes they were sampled for."""
    others = rng.choice([n for n in range(num_nodes) if n != target], size=int(rng.integers(4, 10)), replace=False)
    node_list = [target, *map(int, others)]
    src, dst = [], []
    for local in range(1, len(node_list)):
        src.append(local)
        dst.append(0 if local <= 3 else int(rng.integers(1, 4)))
    return node_list, [src, dst]


def node_items(dataset: str, variant: str, count: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    items = []
    for i in range(count):
        target = int(rng.integers(0, NODES[dataset]))
        node_list, edges = sampled_graph(rng, NODES[dataset], target)
        if dataset == "arxiv":
            code, name = ARXIV_CLASSES[i % len(ARXIV_CLASSES)]
            answer = f"{code}, {name}"
        else:
            answer = (CORA_CLASSES if dataset == "cora" else PUBMED_CLASSES)[i % (5 if dataset == "cora" else 3)]
        graph = {"node_idx": target, "edge_index": edges, "node_list": node_list}
        conversations = [{"from": "human", "value": human_turn(dataset, variant, f"paper {i}")}, {"from": "gpt", "value": answer}]
        items.append({"id": f"{dataset}_test_{i}", "graph": graph, "conversations": conversations})
    return items


def one_node_item(dataset: str, variant: str) -> dict:
    """The smallest graph: the target node alone, no edges."""
    target = NODES[dataset] - 1
    graph = {"node_idx": target, "edge_index": [[], []], "node_list": [target]}
    answer = {"cora": CORA_CLASSES[0], "pubmed": PUBMED_CLASSES[0], "arxiv": ", ".join(ARXIV_CLASSES[0])}[dataset]
    conversations = [{"from": "human", "value": human_turn(dataset, variant, "a paper alone")}, {"from": "gpt", "value": answer}]
    return {"id": f"{dataset}_test_one_node", "graph": graph, "conversations": conversations}


def link_items(count: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    items = []
    for i in range(count):
        graph = {}
        for n in (1, 2):
            target = int(rng.integers(0, NODES["pubmed"]))
            node_list, edges = sampled_graph(rng, NODES["pubmed"], target)
            graph.update({f"node_idx_{n}": target, f"edge_index_{n}": edges, f"node_list_{n}": node_list})
        question = (
            "Given a sequence of graph tokens: \n<graph>\n that constitute a subgraph of a citation graph, where the first "
            "token is the first paper, and another sequence of graph tokens: \n<graph>\n where the first token is the second "
            "paper. Are these two papers connected? Please answer yes or no."
        )
        answer = "yes" if i % 2 == 0 else "no"
        conversations = [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]
        items.append({"id": f"pubmed_test_{i}_LP", "graph": graph, "conversations": conversations})
    return items


def feature_tables(width: int = 16, seed: int = 0) -> dict[str, dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    return {
        name: {"x": torch.randn(n, width, generator=generator), "y": torch.randint(0, 3, (n,), generator=generator)}
        for name, n in NODES.items()
    }


def write_graph_snapshot(root: str | Path, items_per_file: int = 3, width: int = 16, smallest_first: bool = False) -> Path:
    """Write both snapshots under ``root`` and return ``root`` (the value for LMMS_TEXTDOM_DATA).

    ``smallest_first`` puts a ``one_node_item`` first in every node-classification file.
    """
    from safetensors.torch import save_file

    root = Path(root)
    folder = root / REPO
    folder.mkdir(parents=True, exist_ok=True)
    for number, dataset in enumerate(NODES):
        for variant in ("std", "cot"):
            items = node_items(dataset, variant, items_per_file, seed=10 * number + len(variant))
            if smallest_first:
                items.insert(0, one_node_item(dataset, variant))
            (folder / f"{dataset}_test_instruct_{variant}.json").write_text(json.dumps(items))
    (folder / "pubmed_test_instruct_LP.json").write_text(json.dumps(link_items(items_per_file, seed=99)))
    features = root / FEATURES_REPO
    features.mkdir(parents=True, exist_ok=True)
    tables = feature_tables(width)
    save_file({f"{name}.{key}": t for name, table in tables.items() for key, t in table.items()}, str(features / CONVERTED_NAME))
    return root


def write_pyg_graph_data(path: str | Path, width: int = 16) -> dict[str, dict[str, torch.Tensor]]:
    """Upstream's layout: ``torch.save({name: Data(x, y [n, 1], edge_index, ...)})``; returns the tables written."""
    from torch_geometric.data import Data

    tables = feature_tables(width)
    data = {
        name: Data(num_nodes=t["x"].shape[0], x=t["x"], y=t["y"][:, None], edge_index=torch.tensor([[0, 1], [1, 2]]))
        for name, t in tables.items()
    }
    torch.save(data, path)
    return tables
