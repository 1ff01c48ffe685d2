"""graphgpt_textdom on the graph tasks through the real lmms-eval CLI, plain (x1) and replicated (x10)."""

from __future__ import annotations

import numpy as np
import pytest

from lmms_textdom.integration.hook import METRIC_NAMES
from lmms_textdom.models.base import Request
from lmms_textdom.models.graphgpt.adapter import GraphGPTTextdom
from tests.lmms_runs import results_of, run_cli, samples_of
from tests.oracle import eager_class_masses

GROUP = "graphgpt_eval_textdom"
SUBTASKS = ("graphgpt_cora_textdom", "graphgpt_pubmed_textdom", "graphgpt_arxiv_textdom", "graphgpt_pubmed_lp_textdom")
COT = ("graphgpt_cora_cot_textdom", "graphgpt_pubmed_cot_textdom", "graphgpt_arxiv_cot_textdom")
NEW_TOKENS = 6
DOCS = 3  # per instruction file


def run(tiny_graphgpt, data_root, output, tasks: str, model_args: str = ""):
    checkpoint, graphclip = tiny_graphgpt
    done = run_cli(
        "graphgpt_textdom", f"pretrained={checkpoint},graph_tower={graphclip}{model_args}", tasks, output, data_root,
        "--batch_size", "2", "--gen_kwargs", f"max_new_tokens={NEW_TOKENS}",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return output


@pytest.fixture(scope="module")
def plain_run(tiny_graphgpt, graph_data_root, tmp_path_factory):
    return run(tiny_graphgpt, graph_data_root, tmp_path_factory.mktemp("graph_x1"), ",".join((GROUP, *COT)))


@pytest.fixture(scope="module")
def repeated_run(tiny_graphgpt, graph_data_root, tmp_path_factory):
    return run(tiny_graphgpt, graph_data_root, tmp_path_factory.mktemp("graph_x10"), GROUP, ",nontext_repeat=10")


FILES = {
    "graphgpt_cora_textdom": ("cora_test_instruct_std.json", "cora"),
    "graphgpt_pubmed_textdom": ("pubmed_test_instruct_std.json", "pubmed"),
    "graphgpt_arxiv_textdom": ("arxiv_test_instruct_std.json", "arxiv"),
    "graphgpt_pubmed_lp_textdom": ("pubmed_test_instruct_LP.json", "link"),
    "graphgpt_cora_cot_textdom": ("cora_test_instruct_cot.json", "cora"),
}


def by_id(output, task) -> dict[int, dict]:
    return samples_of(output, task, key=lambda row: row["doc_id"])


def task_docs(data_root, task, monkeypatch):
    from lmms_textdom.tasks.graphgpt_eval.utils import load_items

    monkeypatch.setenv("LMMS_TEXTDOM_DATA", str(data_root))
    return load_items(*FILES[task])


def nodes_of(doc) -> list[int]:
    graph = doc["graph"]
    if "node_list" in graph:
        return [len(graph["node_list"])]
    return [len(graph["node_list_1"]), len(graph["node_list_2"])]


@pytest.mark.parametrize("which", ["plain_run", "repeated_run"])
def test_results_table_has_accuracy_and_the_six_metrics(request, which):
    output = request.getfixturevalue(which)
    results = results_of(output)["results"]
    for task in (GROUP, *SUBTASKS):
        for metric in (*METRIC_NAMES, "accuracy"):
            assert isinstance(results[task][f"{metric},none"], float), (task, metric)
    for task in SUBTASKS[:3]:
        assert isinstance(results[task]["macro_f1,none"], float)
        assert results[task]["textdom,none"] == DOCS
    assert results[GROUP]["textdom,none"] == 4 * DOCS
    assert results[GROUP]["accuracy,none"] == pytest.approx(np.mean([results[t]["accuracy,none"] for t in SUBTASKS]))
    for task in SUBTASKS:
        samples = by_id(output, task)
        assert results[task]["accuracy,none"] == pytest.approx(np.mean([s["accuracy"] for s in samples.values()]))


def test_cot_variants_run_as_their_own_tasks(plain_run, graph_data_root, monkeypatch):
    results = results_of(plain_run)["results"]
    for task in COT:
        assert results[task]["textdom,none"] == DOCS
    cot = task_docs(graph_data_root, "graphgpt_cora_cot_textdom", monkeypatch)
    std = task_docs(graph_data_root, "graphgpt_cora_textdom", monkeypatch)
    assert "and other nodes are its" not in cot[0]["conversations"][0]["value"]
    assert "and other nodes are its" in std[0]["conversations"][0]["value"]


@pytest.mark.parametrize("task", SUBTASKS)
def test_graph_positions_are_the_node_counts_times_k(plain_run, repeated_run, graph_data_root, monkeypatch, task):
    plain, repeated = by_id(plain_run, task), by_id(repeated_run, task)
    docs = task_docs(graph_data_root, task, monkeypatch)
    assert plain.keys() == repeated.keys() and len(plain) == DOCS
    for item_id, row in plain.items():
        nodes = nodes_of(docs[item_id])
        p, r = row["textdom"], repeated[item_id]["textdom"]
        assert p["stats"]["classes"] == ["text", "graph"]
        text, graph = p["stats"]["counts"]
        markers = p["stats"]["subclasses"]["graph_marker"]["count"]
        assert graph == sum(nodes) and markers == 2 * len(nodes)
        assert r["stats"]["counts"] == [text, 10 * graph], item_id
        assert r["stats"]["subclasses"]["graph_marker"]["count"] == markers
        assert (r["settings"]["nontext_repeat"], r["settings"]["nontext_original"], r["settings"]["graph_nodes"]) == (10, graph, nodes)
        assert p["settings"]["nontext_repeat"] == 1 and p["settings"]["graph_nodes"] == nodes


@pytest.mark.parametrize("task", ["graphgpt_pubmed_textdom", "graphgpt_pubmed_lp_textdom"])
def test_sample_log_values_equal_eager_attention(plain_run, tiny_graphgpt, graph_data_root, monkeypatch, task):
    """The logged masses of a node-classification and a link-prediction item against eager attention."""
    from lmms_textdom.tasks.graphgpt_eval.utils import doc_to_text, doc_to_visual

    checkpoint, graphclip = tiny_graphgpt
    adapter = GraphGPTTextdom(pretrained=str(checkpoint), graph_tower=str(graphclip), device="cpu", textdom=False)
    docs = task_docs(graph_data_root, task, monkeypatch)
    logged = by_id(plain_run, task)
    for doc_id in (0, 1):
        doc = docs[doc_id]
        prepared = adapter.prepare([Request(doc_to_text(doc), doc_to_visual(doc), doc, {})])
        stats = logged[doc_id]["textdom"]["stats"]
        ids = prepared.classes.ids.clone()
        ids[prepared.classes.subclasses["graph_marker"]] = 2  # the markers apart: text, graph, markers
        _, (masses,) = eager_class_masses(adapter.model, dict(prepared.inputs), ids, 3, [stats["rows"]], max_new_tokens=NEW_TOKENS)
        assert stats["counts"] == list(prepared.classes.counts()[0])
        np.testing.assert_allclose(stats["mass"], np.column_stack([masses[:, 0] + masses[:, 2], masses[:, 1]]), atol=1e-4)
        np.testing.assert_allclose(stats["subclasses"]["graph_marker"]["mass"], masses[:, 2], atol=1e-4)
