"""GraphGPT-eval-instruction for lmms-eval: loading, graphs, prompt and scoring.

Items come from ``Jiabin99/GraphGPT-eval-instruction`` (hub, or ``$LMMS_TEXTDOM_DATA``); node features
from the converted copy of ``graph_data_all.pt`` (``lmms-textdom graph-data convert``) at
``$LMMS_TEXTDOM_GRAPH_FEATURES``, else ``$LMMS_TEXTDOM_DATA/Jiabin99/All_pyg_graph_data/graph_data_all.safetensors``.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

from loguru import logger

from lmms_textdom.core.errors import UsageError
from lmms_textdom.integration.data import ENV, loud_process_docs, snapshot_files
from lmms_textdom.integration.hook import split_response, textdom_metrics
from lmms_textdom.media.graphs import CONVERT_HINT, CONVERTED_NAME, feature_table, node_features
from lmms_textdom.tasks.graphgpt_eval.scoring import PUBMED_CLASSES, arxiv_gold, arxiv_matches, first_class, macro_f1, yes_no, TOP_K

REPO = "Jiabin99/GraphGPT-eval-instruction"
FEATURES_REPO = "Jiabin99/All_pyg_graph_data"
FEATURES_ENV = "LMMS_TEXTDOM_GRAPH_FEATURES"


def features_path() -> Path:
    """Where the converted node features are; an error naming the convert command when they are not there."""
    if os.environ.get(FEATURES_ENV):
        path = Path(os.environ[FEATURES_ENV]).expanduser()
    elif os.environ.get(ENV):
        path = Path(os.environ[ENV]).expanduser() / FEATURES_REPO / CONVERTED_NAME
    else:
        raise UsageError(
            f"GraphGPT's node features are read from a converted copy of graph_data_all.pt ({FEATURES_REPO}): set "
            f"{FEATURES_ENV} to it, or {ENV} to a folder holding {FEATURES_REPO}/{CONVERTED_NAME}. Write it once with\n"
            f"  {CONVERT_HINT.format(output=f'${ENV}/{FEATURES_REPO}/{CONVERTED_NAME}')}"
        )
    if not path.is_file():
        raise UsageError(f"no converted graph features at {path}; write them once with\n  {CONVERT_HINT.format(output=path)}")
    return path


def gold_class(item: dict, kind: str, class_names: list[str]) -> str | None:
    answer = item["conversations"][1]["value"]
    if kind == "arxiv":
        return arxiv_gold(answer)
    if kind == "link":
        return yes_no(answer)
    return first_class(answer, class_names) if kind == "pubmed" else answer.strip().rstrip(".").strip()


def load_items(filename: str, kind: str):
    """The items of one instruction file with their gold class (and, for class-name matching, the names)."""
    import datasets

    features_path()  # fail before generation when the features are missing
    folder = snapshot_files(REPO, [filename])
    items = json.loads((folder / filename).read_text())
    names = list(PUBMED_CLASSES) if kind == "pubmed" else []
    if kind == "cora":  # the class names are the distinct reference answers
        names = sorted({gold_class(item, kind, []) for item in items})
    rows, skipped = [], 0
    for item in items:
        gold = gold_class(item, kind, names)
        if gold is None:
            skipped += 1
            continue
        rows.append({"id": item["id"], "graph": item["graph"], "conversations": item["conversations"], "gold_class": gold, "class_names": names})
    if skipped:
        logger.warning(f"{filename}: {skipped} items without a readable reference class were left out")
    return datasets.Dataset.from_list(rows)


def _loader(filename: str, kind: str):
    return loud_process_docs(lambda: load_items(filename, kind), f"load_{filename.removesuffix('.json')}")


load_cora_std = _loader("cora_test_instruct_std.json", "cora")
load_cora_cot = _loader("cora_test_instruct_cot.json", "cora")
load_pubmed_std = _loader("pubmed_test_instruct_std.json", "pubmed")
load_pubmed_cot = _loader("pubmed_test_instruct_cot.json", "pubmed")
load_arxiv_std = _loader("arxiv_test_instruct_std.json", "arxiv")
load_arxiv_cot = _loader("arxiv_test_instruct_cot.json", "arxiv")
load_pubmed_lp = _loader("pubmed_test_instruct_LP.json", "link")


def item_graphs(doc) -> list[tuple[list[int], list[list[int]]]]:
    """(node list, local edge index) of each graph of an item: one for node classification, two for link prediction."""
    graph = doc["graph"]
    if "node_list" in graph:
        return [(graph["node_list"], graph["edge_index"])]
    return [(graph[f"node_list_{n}"], graph[f"edge_index_{n}"]) for n in (1, 2)]


def doc_to_visual(doc):
    dataset = doc["id"].split("_")[0]
    table = feature_table(str(features_path()), dataset)
    # node_ids: the dataset's own node numbers, which attention maps name each graph position by
    return [{"x": node_features(table, nodes, doc["id"]), "edge_index": edges, "node_ids": list(nodes)} for nodes, edges in item_graphs(doc)]


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    return doc["conversations"][0]["value"]


def doc_to_target(doc) -> str:
    return doc["gold_class"]


def _response(results) -> tuple[str, dict | None]:
    texts, payload = split_response(results)
    return (texts[0] if texts else ""), payload


def process_node_class(doc, results):
    """cora / pubmed: the earliest class name of the response (longest on ties)."""
    response, payload = _response(results)
    predicted = first_class(response, doc["class_names"])
    gold = doc["gold_class"]
    return {"accuracy": float(predicted == gold), "macro_f1": {"gold": gold, "predicted": predicted}, **textdom_metrics(payload)}


def process_arxiv(doc, results):
    """arxiv: correct when the gold category is among the first three named (GraphGPT's rule)."""
    response, payload = _response(results)
    found = arxiv_matches(response)
    gold = doc["gold_class"]
    predicted = found[0] if found else None
    return {"accuracy": float(gold in found[:TOP_K]), "macro_f1": {"gold": gold, "predicted": predicted}, **textdom_metrics(payload)}


def process_link(doc, results):
    response, payload = _response(results)
    return {"accuracy": float(yes_no(response) == doc["gold_class"]), **textdom_metrics(payload)}


def aggregate_macro_f1(items) -> float:
    return macro_f1([(item["predicted"], item["gold"]) for item in items]) if items else math.nan
