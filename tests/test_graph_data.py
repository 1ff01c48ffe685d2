"""GraphGPT data: the graph_data_all.pt converter, the task's feature lookup and its errors, the scorers."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest
import torch

from lmms_textdom.core.errors import UsageError
from lmms_textdom.media.graphs import CONVERTED_NAME, convert_graph_data, feature_table
from lmms_textdom.tiny.graph_data import feature_tables, write_pyg_graph_data
from lmms_textdom.tasks.graphgpt_eval import scoring
from lmms_textdom.tasks.graphgpt_eval.utils import doc_to_visual, features_path, load_items


# ----- the converter ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pyg_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("pyg") / "graph_data_all.pt"
    return path, write_pyg_graph_data(path)


def test_converter_writes_plain_tensors_of_every_dataset(pyg_file, tmp_path):
    source, tables = pyg_file
    output = convert_graph_data(source, tmp_path / "features.safetensors")
    from safetensors.torch import load_file

    converted = load_file(str(output))
    assert set(converted) == {f"{name}.{key}" for name in tables for key in ("x", "y")}
    for name, table in tables.items():
        assert torch.equal(converted[f"{name}.x"], table["x"])
        assert torch.equal(converted[f"{name}.y"], table["y"])  # [n, 1] in the pickle, flat here


def test_convert_command_writes_next_to_the_source(pyg_file):
    source, tables = pyg_file
    done = subprocess.run(
        [sys.executable, "-m", "lmms_textdom.cli", "graph-data", "convert", str(source)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    output = source.with_name(CONVERTED_NAME)
    assert f"wrote {output}" in done.stdout and "pubmed.x: [30, 16] F32" in done.stdout
    assert torch.equal(feature_table(str(output), "cora"), tables["cora"]["x"])


def test_adjacency_of_an_uninstalled_sparse_class_is_skipped(tmp_path, monkeypatch):
    """The arxiv entry holds a torch_sparse SparseTensor (adj_t): converting must not need torch_sparse."""
    from torch_geometric.data import Data

    fake = types.ModuleType("torch_sparse")

    class SparseTensor:
        def __init__(self, rows):
            self.rows = rows

    SparseTensor.__module__, SparseTensor.__qualname__ = "torch_sparse", "SparseTensor"
    fake.SparseTensor = SparseTensor
    monkeypatch.setitem(sys.modules, "torch_sparse", fake)
    x = torch.randn(5, 4)
    torch.save({"arxiv": Data(x=x, y=torch.arange(5)[:, None], adj_t=SparseTensor([0, 1]))}, tmp_path / "graph_data_all.pt")
    monkeypatch.delitem(sys.modules, "torch_sparse")
    with pytest.raises(ModuleNotFoundError):
        __import__("torch_sparse")
    output = convert_graph_data(tmp_path / "graph_data_all.pt")
    assert torch.equal(feature_table(str(output), "arxiv"), x)


def test_converter_errors(tmp_path):
    with pytest.raises(UsageError, match="no such file"):
        convert_graph_data(tmp_path / "missing.pt")
    torch.save({"cora": {"not": "a graph"}}, tmp_path / "bad.pt")
    with pytest.raises(UsageError, match="dataset 'cora' has no 2-D node feature table x"):
        convert_graph_data(tmp_path / "bad.pt")


# ----- the task's features ------------------------------------------------------------------------


def test_missing_converted_features_name_the_convert_command(tmp_path, monkeypatch):
    monkeypatch.delenv("LMMS_TEXTDOM_GRAPH_FEATURES", raising=False)
    monkeypatch.delenv("LMMS_TEXTDOM_DATA", raising=False)
    with pytest.raises(UsageError, match="lmms-textdom graph-data convert <path>/graph_data_all.pt --output"):
        features_path()
    monkeypatch.setenv("LMMS_TEXTDOM_DATA", str(tmp_path))
    with pytest.raises(UsageError, match=f"no converted graph features at {tmp_path}/Jiabin99/All_pyg_graph_data/{CONVERTED_NAME}"):
        load_items("cora_test_instruct_std.json", "cora")


def test_node_ids_outside_the_feature_table_are_refused(graph_data_root, monkeypatch):
    monkeypatch.setenv("LMMS_TEXTDOM_DATA", str(graph_data_root))
    docs = load_items("cora_test_instruct_std.json", "cora")
    doc = dict(docs[0])
    (graph,) = doc_to_visual(doc)
    assert torch.equal(graph["x"], feature_tables()["cora"]["x"][doc["graph"]["node_list"]])
    doc["graph"] = {**doc["graph"], "node_list": [*doc["graph"]["node_list"][:-1], 40]}
    with pytest.raises(UsageError, match="cora_test_0: node id 40 is outside the feature table of 40 nodes"):
        doc_to_visual(doc)


def test_link_items_carry_two_graphs(graph_data_root, monkeypatch):
    monkeypatch.setenv("LMMS_TEXTDOM_DATA", str(graph_data_root))
    docs = load_items("pubmed_test_instruct_LP.json", "link")
    graphs = doc_to_visual(docs[0])
    assert [g["x"].shape[0] for g in graphs] == [len(docs[0]["graph"]["node_list_1"]), len(docs[0]["graph"]["node_list_2"])]
    assert [d["gold_class"] for d in docs] == ["yes", "no", "yes"]


# ----- scorers ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "response,gold,correct",
    [
        ("cs.LG, Machine Learning", "cs.LG", True),
        ("It is cs.CV or cs.AI, maybe cs.CV again, then cs.LG", "cs.LG", True),  # third distinct match
        ("cs.CV, cs.AI, cs.RO, cs.LG", "cs.LG", False),  # fourth
        ("cs.XX is not a category; cs.CV, cs.AI, cs.LG", "cs.LG", True),  # unknown codes are skipped first
        ("cs.lg (lower case is not the form asked)", "cs.LG", False),
        ("no category", "cs.LG", False),
    ],
)
def test_arxiv_top3_rule(response, gold, correct):
    assert (gold in scoring.arxiv_matches(response)[: scoring.TOP_K]) is correct


def test_arxiv_gold_comes_from_the_reference_answer():
    assert scoring.arxiv_gold("cs.DB, Databases") == "cs.DB"
    assert scoring.arxiv_gold("Databases") is None


@pytest.mark.parametrize(
    "response,expected",
    [
        ("The answer is machine learning theory.", "Machine Learning Theory"),  # longest on a tie
        ("Data Mining, not Machine Learning", "Data Mining"),  # earliest wins
        ("Machine Learning; Machine Learning Theory later", "Machine Learning"),
        ("nothing that matches", None),
    ],
)
def test_class_name_matching(response, expected):
    names = ["Machine Learning", "Machine Learning Theory", "Computer Vision", "Data Mining"]
    assert scoring.first_class(response, names) == expected


def test_pubmed_names_do_not_shadow_each_other():
    assert scoring.first_class("This involves type 2 diabetes.", scoring.PUBMED_CLASSES) == "Type 2 diabetes"
    assert scoring.first_class("Experimentally induced diabetes (not Type 1 diabetes)", scoring.PUBMED_CLASSES) == (
        "Experimentally induced diabetes"
    )


@pytest.mark.parametrize("response,expected", [("Yes, they are.", "yes"), ("No.", "no"), ("I know nothing", None), ("not sure; yes", "yes")])
def test_yes_no(response, expected):
    assert scoring.yes_no(response) == expected


def test_macro_f1_over_gold_classes():
    pairs = [("a", "a"), ("a", "a"), ("a", "b"), (None, "b"), ("b", "c")]
    # a: P 2/3 R 1 -> 0.8; b: 0 hits -> 0; c: 0 -> 0
    assert scoring.macro_f1(pairs) == pytest.approx(0.8 / 3)
    assert scoring.macro_f1([("x", "x")]) == 1.0
