"""graphgpt_textdom on a tiny GraphGPT-layout checkpoint: loading (RoPE scaling, tower source), the graph
transformer against a per-edge reference, graph positions, the probe against eager attention, bad input."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from lmms_textdom.core.errors import UsageError
from lmms_textdom.core.metrics import dominance, summarize
from lmms_textdom.core.stats import SampleStats
from lmms_textdom.models.base import Request
from lmms_textdom.models.graphgpt.adapter import GraphGPTTextdom
from lmms_textdom.models.graphgpt.inputs import tokenize
from lmms_textdom.models.graphgpt.prompt import SYSTEM, conversation, expand_graphs
from lmms_textdom.models.graphgpt.tower import GraphTransformer
from lmms_textdom.tiny.graph_data import feature_tables, link_items, node_items
from lmms_textdom.tiny.graphgpt import TINY_TOWER, save_graphclip, tiny_tower
from tests.test_probe import NEW_TOKENS, assert_matches_eager

TABLES = feature_tables()


def adapter_for(tiny_graphgpt, **model_args) -> GraphGPTTextdom:
    checkpoint, graphclip = tiny_graphgpt
    model_args.setdefault("graph_tower", str(graphclip))
    return GraphGPTTextdom(pretrained=str(checkpoint), device="cpu", **model_args)


def request_of(item: dict, new_tokens: int = NEW_TOKENS) -> Request:
    """An lmms-eval request as the task builds it: the human turn, one graph item per graph."""
    dataset = item["id"].split("_")[0]
    graph = item["graph"]
    keys = [("node_list", "edge_index")] if "node_list" in graph else [(f"node_list_{n}", f"edge_index_{n}") for n in (1, 2)]
    visuals = [{"x": TABLES[dataset]["x"][graph[n]].numpy(), "edge_index": graph[e]} for n, e in keys]
    return Request(item["conversations"][0]["value"], visuals, item, {"max_new_tokens": new_tokens})


@pytest.fixture(scope="module")
def adapter(tiny_graphgpt):
    return adapter_for(tiny_graphgpt)


@pytest.fixture(scope="module")
def requests_mixed():
    """A cora item (one graph) and a link-prediction item (two graphs): a left-padded batch."""
    return [request_of(node_items("cora", "std", 1, seed=3)[0]), request_of(link_items(1, seed=5)[0])]


def node_counts(request: Request) -> list[int]:
    return [len(v["x"]) for v in request.visuals]


# ----- loading ---------------------------------------------------------------------------------


def test_linear_rope_scaling_is_kept_and_changes_the_output(adapter, tiny_graphgpt):
    model = adapter.model
    assert model.config.rope_parameters["rope_type"] == "linear" and model.config.rope_parameters["factor"] == 4.0
    head_dim = model.config.hidden_size // model.config.num_attention_heads
    unscaled = 1.0 / (10000.0 ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    torch.testing.assert_close(model.model.rotary_emb.inv_freq, unscaled / 4.0)
    # The same weights without the scaling answer differently: losing it would not be silent here.
    fields = {k: v for k, v in model.config.to_dict().items() if k not in ("rope_parameters", "rope_scaling")}
    plain = LlamaForCausalLM(LlamaConfig(**fields)).eval()
    plain.load_state_dict(model.state_dict())
    ids = torch.arange(3, 60)[None]
    with torch.no_grad():
        assert not torch.allclose(model(ids).logits, plain(ids).logits, atol=1e-3)


def test_projector_and_tower_come_from_the_checkpoint_and_graphclip(adapter, tiny_graphgpt):
    checkpoint, graphclip = tiny_graphgpt
    weights = {}
    for shard in sorted(checkpoint.glob("pytorch_model-*.bin")):
        weights.update(torch.load(shard, weights_only=True))
    assert torch.equal(adapter.projector.weight, weights["model.graph_projector.weight"])
    assert torch.equal(adapter.projector.bias, weights["model.graph_projector.bias"])
    gnn = torch.load(graphclip / "clip_gt_arxiv_pub.pkl", weights_only=True)
    for key, value in adapter.tower.state_dict().items():
        assert torch.equal(value, gnn[f"gnn.{key}"]), key
    assert adapter.tower.config == TINY_TOWER


def test_tower_source_warnings(tiny_graphgpt, tmp_path, logged_warnings):
    checkpoint, _ = tiny_graphgpt
    adapter_for(tiny_graphgpt)  # GraphCLIP file equal to the checkpoint's float16 copy: silent
    assert not [w for w in logged_warnings if "graph tower" in w or "differ" in w]
    other = save_graphclip(tmp_path / "other_clip", seed=2)
    different = adapter_for(tiny_graphgpt, graph_tower=str(other / "clip_gt_arxiv_pub.pkl"))
    assert any("differ; using graph_tower=" in w for w in logged_warnings)
    assert torch.equal(different.tower.W_P.weight, tiny_tower(2).W_P.weight)
    own = GraphGPTTextdom(pretrained=str(checkpoint), device="cpu")
    assert any("using the checkpoint's own graph tower copy" in w for w in logged_warnings)
    assert torch.equal(own.tower.W_P.weight, tiny_tower(1).W_P.weight.half().float())


# ----- the graph transformer ---------------------------------------------------------------------


def reference_tower(tower: GraphTransformer, x: torch.Tensor, edges: list[tuple[int, int]]) -> torch.Tensor:
    """GraphGPT's graph transformer written edge by edge in float64 from the upstream semantics."""
    params = {k: v.double() for k, v in tower.state_dict().items()}
    heads = tower.config.head
    h = x.double() @ params["W_P.weight"].T + params["W_P.bias"]
    for layer in range(tower.config.gt_layers):
        p = lambda name: params[f"gtLayers.{layer}.{name}"]  # noqa: E731
        out = torch.zeros_like(h)
        for node in range(h.shape[0]):
            mine = [(r, c) for r, c in edges if r == node]
            scores = []
            for r, c in mine:
                q, k = (h[r] @ p("qTrans")).view(heads, -1), (h[c] @ p("kTrans")).view(heads, -1)
                scores.append(torch.exp(torch.clamp((q * k).sum(-1), -10, 10)))
            total = sum(scores) if scores else None
            for (r, c), score in zip(mine, scores):
                v = (h[c] @ p("vTrans")).view(heads, -1)
                out[node] += ((score / (total + 1e-8))[:, None] * v).reshape(-1)
        y = out + h
        mean, var = y.mean(-1, keepdim=True), y.var(-1, unbiased=False, keepdim=True)
        h = (y - mean) / torch.sqrt(var + 1e-6) * p("norm.weight") + p("norm.bias")
    return h @ params["inverW_P.weight"].T + params["inverW_P.bias"]


# (nodes, edges (row <- col)): node 6 is never a row (keeps only its residual), node 0 has several
# in-edges and a repeated edge; then graphs without edges, as an isolated target node gives them
TOWER_CASES = {
    "graph": (7, [(0, 1), (0, 2), (0, 2), (1, 3), (2, 4), (3, 5), (4, 0), (5, 6), (1, 1)]),
    "no edges": (4, []),
    "one node": (1, []),
    "one node, self-loop": (1, [(0, 0)]),
}


def edge_tensor(edges: list[tuple[int, int]]) -> torch.Tensor:
    return torch.tensor(edges, dtype=torch.long).reshape(-1, 2).T


@pytest.mark.parametrize("case", list(TOWER_CASES))
def test_graph_transformer_equals_the_per_edge_reference(case):
    nodes, edges = TOWER_CASES[case]
    tower = tiny_tower(3).eval()
    x = torch.randn(nodes, TINY_TOWER.gnn_input, generator=torch.Generator().manual_seed(0)) * 3
    with torch.no_grad():
        got = tower(x, edge_tensor(edges))
    assert got.shape == (nodes, TINY_TOWER.gnn_output)
    torch.testing.assert_close(got.double(), reference_tower(tower, x, edges), atol=1e-5, rtol=1e-5)


def test_graph_transformer_is_equivariant_to_node_order():
    nodes, edges = TOWER_CASES["graph"]
    tower = tiny_tower(3).eval()
    x = torch.randn(nodes, TINY_TOWER.gnn_input, generator=torch.Generator().manual_seed(0)) * 3
    perm = torch.randperm(nodes, generator=torch.Generator().manual_seed(1))
    inverse = torch.argsort(perm)
    moved = [(int(inverse[r]), int(inverse[c])) for r, c in edges]
    with torch.no_grad():
        torch.testing.assert_close(tower(x[perm], edge_tensor(moved)), tower(x, edge_tensor(edges))[perm], atol=1e-5, rtol=1e-5)


def test_graphs_without_edges_go_through_the_adapter(adapter):
    """An isolated target node (one node, no edge) and an edgeless graph: encoded as upstream does, then generated under the probe."""
    features = feature_tables()["pubmed"]["x"]
    graphs = {
        "one node": {"x": features[:1].numpy(), "edge_index": [[], []]},
        "no edges": {"x": features[3:6].numpy(), "edge_index": []},
    }
    for graph in graphs.values():
        params = {k: v.double() for k, v in adapter.projector.state_dict().items()}
        expected = reference_tower(adapter.tower, torch.as_tensor(graph["x"]), []) @ params["weight"].T + params["bias"]
        torch.testing.assert_close(adapter.graph_features(graph, "test").double(), expected, atol=1e-5, rtol=1e-5)
    question = "Given a citation graph: \n<graph>\nwhere the 0th node is the target paper."
    requests = [Request(question, [g], {"id": name}, {"max_new_tokens": NEW_TOKENS}) for name, g in graphs.items()]
    prepared = adapter.prepare(requests)
    assert [c[1] for c in prepared.classes.counts()] == [1, 3]
    assert_matches_eager(adapter.model, dict(prepared.inputs), prepared.classes, adapter.graph_tokens.pad)
    for (text, payload), request in zip((adapter._run_batch([r])[0] for r in requests), requests):
        record = json.loads(payload)
        assert SampleStats.from_dict(record["stats"]).counts[1] == len(request.visuals[0]["x"])


# ----- prompt and positions ------------------------------------------------------------------------


def test_prompt_is_graphchat_v1_with_node_slots():
    question = "Given a citation graph: \n<graph>\nwhere ... Question: which?"
    expanded = expand_graphs(question, [3])
    assert expanded == "Given a citation graph: \n<g_start><g_patch><g_patch><g_patch><g_end>\nwhere ... Question: which?"
    prompt = conversation(expanded)
    assert prompt == f"{SYSTEM} USER: {expanded} ASSISTANT:"
    assert "HKUDS Lab.You are able" in SYSTEM and SYSTEM.endswith("explain your answers in detail.")


@pytest.mark.parametrize("repeat", [1, 10])
def test_graph_positions_equal_node_counts_times_k(tiny_graphgpt, adapter, requests_mixed, repeat):
    used = adapter if repeat == 1 else adapter_for(tiny_graphgpt, nontext_repeat=repeat)
    prepared = used.prepare(requests_mixed)
    assert prepared.classes.names == ("text", "graph") and "graph_marker" in prepared.classes.subclasses
    plain = adapter.prepare(requests_mixed).classes.counts()
    markers = prepared.classes.subclass_counts()
    for counts, base, request, marked in zip(prepared.classes.counts(), plain, requests_mixed, markers):
        nodes = sum(node_counts(request))
        assert counts[1] == repeat * nodes
        assert marked["graph_marker"] == 2 * len(request.visuals)  # one <g_start> and one <g_end> per graph
        assert counts[0] == base[0]  # text untouched
    assert "input_ids" not in prepared.inputs and prepared.inputs["inputs_embeds"].shape[1] == prepared.classes.length


def test_node_features_are_spliced_over_the_patch_slots(tiny_graphgpt, adapter, requests_mixed):
    link = requests_mixed[1]
    expected = [adapter.graph_features(g, "test") for g in link.visuals]
    for faithful in (False, True):
        used = adapter if not faithful else adapter_for(tiny_graphgpt, faithful_lp_bug=True)
        prepared = used.prepare([link])
        embeds = prepared.inputs["inputs_embeds"][0]
        slots = (prepared.classes.ids[0] == 1).nonzero().flatten()
        first, second = slots[: expected[0].shape[0]], slots[expected[0].shape[0] :]
        torch.testing.assert_close(embeds[second], expected[1])
        patch_embedding = used.model.get_input_embeddings().weight[used.graph_tokens.patch]
        if faithful:  # upstream: the first graph's slots keep the <g_patch> embedding
            assert torch.equal(embeds[first], patch_embedding.expand(len(first), -1))
        else:
            torch.testing.assert_close(embeds[first], expected[0])


# ----- the probe --------------------------------------------------------------------------------


@pytest.mark.parametrize("repeat", [1, 10])
def test_probe_matches_eager(tiny_graphgpt, adapter, requests_mixed, repeat):
    used = adapter if repeat == 1 else adapter_for(tiny_graphgpt, nontext_repeat=repeat)
    prepared = used.prepare(requests_mixed)
    stats, _ = assert_matches_eager(used.model, dict(prepared.inputs), prepared.classes, used.graph_tokens.pad)
    for s, request in zip(stats, requests_mixed):
        assert s.counts[1] == repeat * sum(node_counts(request))


def test_markers_count_as_text_in_the_metrics(adapter, requests_mixed):
    (text, payload), _ = adapter._run_batch(requests_mixed)
    record = json.loads(payload)
    stats = SampleStats.from_dict(record["stats"])
    assert stats.classes == ("text", "graph") and stats.subclass_counts["graph_marker"] == 2
    values = summarize(stats).values()
    late = [stats.num_layers - 2, stats.num_layers - 1]
    # the markers are text for the headline: the text column already holds their mass and count
    paper = dominance(stats.mass[late][:, 0].sum(), stats.mass[late][:, 1].sum(), stats.counts[0], stats.counts[1])
    assert values["mdi_late"] == pytest.approx(paper.mdi) and values["aei_late"] == pytest.approx(paper.aei)
    markers = np.asarray(stats.subclass_mass["graph_marker"])
    assert (markers > 0).all() and (markers < stats.mass[:, 0]).all()  # kept apart, a part of the text mass
    assert record["settings"]["graph_nodes"] == node_counts(requests_mixed[0])
    assert record["settings"]["faithful_lp_bug"] is False and math.isclose(record["settings"]["prune_ratio"], 0.0)


# ----- bad input ----------------------------------------------------------------------------------


def test_feature_width_not_the_towers_is_refused(adapter):
    graph = {"x": np.zeros((4, 8), dtype=np.float32), "edge_index": [[1, 2], [0, 0]]}
    with pytest.raises(UsageError, match=r"node features of shape \(4, 8\), but the graph tower takes width 16"):
        adapter.prepare([Request("a <graph> b", [graph], {"id": "cora_test_0"}, {})])


def test_graph_marker_count_must_match_the_graphs(adapter, requests_mixed):
    one_graph = requests_mixed[0].visuals
    with pytest.raises(UsageError, match="the prompt has 2 <graph> markers but the item has 1 graphs"):
        adapter.prepare([Request("a <graph> and <graph>", one_graph, {"id": "x"}, {})])
    with pytest.raises(UsageError, match="the prompt has 0 <graph> markers but the item has 1 graphs"):
        adapter.prepare([Request("no marker", one_graph, {"id": "x"}, {})])


def test_edge_index_outside_the_graph_is_refused(adapter):
    graph = {"x": np.zeros((3, 16), dtype=np.float32), "edge_index": [[1, 5], [0, 0]]}
    with pytest.raises(UsageError, match="refers to node 5 of a graph with 3 nodes"):
        adapter.prepare([Request("a <graph>", [graph], {"id": "x"}, {})])


def test_pruning_is_refused_with_the_reason(tmp_path):
    with pytest.raises(UsageError, match="prune_ratio=0.5 is invalid; it must be 0: GraphGPT has no graph-token pruning"):
        GraphGPTTextdom(pretrained=str(tmp_path / "never-loaded"), prune_ratio=0.5)


def test_other_checkpoints_are_refused(tiny_llava_dir):
    with pytest.raises(UsageError, match="loads GraphGPT checkpoints \\(model_type 'GraphLlama'\\); .* model_type 'llava'"):
        GraphGPTTextdom(pretrained=str(tiny_llava_dir), device="cpu")


def test_a_tokenizer_without_the_graph_tokens_is_refused(tiny_graphgpt, tmp_path):
    import shutil

    checkpoint, _ = tiny_graphgpt
    copy = shutil.copytree(checkpoint, tmp_path / "no-graph-tokens")
    (copy / "added_tokens.json").unlink()  # Vicuna's own tokenizer files
    with pytest.raises(UsageError, match="the tokenizer has no <g_patch>, <g_start>, <g_end> token"):
        GraphGPTTextdom(pretrained=str(copy), device="cpu")


def test_missing_tower_weights_name_the_model_arg(tmp_path, tiny_graphgpt):
    from lmms_textdom.tiny.graphgpt import save_graphgpt

    checkpoint = save_graphgpt(tmp_path / "no-tower", tower_seed=None)
    with pytest.raises(UsageError, match="holds no model.graph_tower.\\* weights: pass graph_tower="):
        GraphGPTTextdom(pretrained=str(checkpoint), device="cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="is a folder without a .pkl file"):
        GraphGPTTextdom(pretrained=str(checkpoint), device="cpu", graph_tower=str(tmp_path / "empty"))
    # tower weights whose sizes do not fit the checkpoint's projector
    from lmms_textdom.models.graphgpt.tower import TowerConfig

    wide = save_graphclip(tmp_path / "wide", config=TowerConfig(gnn_input=16, att_d_model=16, gnn_output=24, gt_layers=1, head=8))
    with pytest.raises(UsageError, match="graph_projector is 16 -> 32, but the tower gives 24"):
        GraphGPTTextdom(pretrained=str(checkpoint), device="cpu", graph_tower=str(wide))


# ----- the tokenizer: upstream's prompt ids -------------------------------------------------------


def upstream_ids(checkpoint: Path, prompt: str) -> list[int]:
    """The ids GraphGPT's evaluation (transformers 4.31, tokenizers 0.13) gave ``prompt``, from sentencepiece itself.

    ``run_graphgpt.py`` loads the checkpoint with ``AutoTokenizer``: with no tokenizer.json, 4.31 converts
    the sentencepiece ``tokenizer.model`` to a fast tokenizer whose normalizer is ``Prepend("▁")`` then
    ``Replace(" ", "▁")`` (no ``legacy`` switch in that converter), over a BPE of the sentencepiece
    vocabulary, and then registers ``<g_patch>``, ``<g_start>``, ``<g_end>`` again with
    ``add_tokens(..., special_tokens=True)``: non-normalized tokens, matched on the raw text before
    normalization. So the prompt is cut at those tokens, each text chunk between them is normalized and
    encoded on its own (its own leading "▁": a "\\n" after ``<g_end>`` gives "▁" then <0x0A>), and the
    post-processor puts BOS first. Encoding a chunk that way is sentencepiece's own ``encode`` of it as a
    separate string (dummy prefix, identity normalizer, spaces kept), which is what this uses.
    """
    import sentencepiece

    sp = sentencepiece.SentencePieceProcessor(model_file=str(checkpoint / "tokenizer.model"))
    added = json.loads((checkpoint / "added_tokens.json").read_text())
    ids = [sp.bos_id()]
    for chunk in re.split("(" + "|".join(map(re.escape, added)) + ")", prompt):
        ids += [added[chunk]] if chunk in added else sp.encode(chunk) if chunk else []
    return ids


def test_the_tiny_checkpoint_ships_the_real_tokenizer_files(tiny_graphgpt):
    checkpoint, _ = tiny_graphgpt
    names = {p.name for p in checkpoint.iterdir()}
    assert {"tokenizer.model", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json"} <= names
    assert "tokenizer.json" not in names
    config = json.loads((checkpoint / "tokenizer_config.json").read_text())
    assert config["legacy"] is False and config["tokenizer_class"] == "LlamaTokenizer" and "added_tokens_decoder" not in config


def test_prompt_ids_are_upstreams(tiny_graphgpt, adapter, requests_mixed):
    checkpoint, _ = tiny_graphgpt
    newline = adapter.tokenizer.convert_tokens_to_ids(["▁", "<0x0A>"])
    for request in requests_mixed:
        prompt = conversation(expand_graphs(request.context, node_counts(request)))
        expected = upstream_ids(checkpoint, prompt)
        got = tokenize(adapter.tokenizer, prompt, adapter.graph_tokens)
        assert got == expected
        # what the issue saw upstream: "▁" then the newline after every <g_end>
        ends = [i for i, t in enumerate(expected) if t == adapter.graph_tokens.end]
        assert len(ends) == len(request.visuals) and all(expected[i + 1 : i + 3] == newline for i in ends)
        # and the adapter's input is built on these ids: the text positions hold their embeddings
        prepared = adapter.prepare([request])
        embeds, text = prepared.inputs["inputs_embeds"][0], prepared.classes.ids[0] == 0
        assert embeds.shape[0] == len(expected)
        table = adapter.model.get_input_embeddings().weight
        torch.testing.assert_close(embeds[text], table[torch.tensor(expected)[text]])


@pytest.mark.parametrize("legacy", [False, None, True], ids=["legacy false", "no legacy key", "legacy true"])
def test_prompt_ids_do_not_depend_on_the_legacy_flag(tiny_graphgpt, requests_mixed, tmp_path, legacy):
    """4.31's conversion ignored ``legacy``; so does the loader, whatever tokenizer_config.json says."""
    import shutil

    from lmms_textdom.models.graphgpt.tokenizer import load_tokenizer

    checkpoint, _ = tiny_graphgpt
    for name in ("tokenizer.model", "special_tokens_map.json", "added_tokens.json", "tokenizer_config.json"):
        shutil.copy(checkpoint / name, tmp_path / name)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    config.pop("legacy")
    if legacy is not None:
        config["legacy"] = legacy
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    tokenizer = load_tokenizer(str(tmp_path))
    request = requests_mixed[1]  # two graphs
    prompt = conversation(expand_graphs(request.context, node_counts(request)))
    assert tokenizer(prompt)["input_ids"] == upstream_ids(checkpoint, prompt)


# ----- dtype and loading ----------------------------------------------------------------------------


def test_tower_and_projector_follow_the_models_dtype(tiny_graphgpt, requests_mixed):
    low = adapter_for(tiny_graphgpt, dtype="bfloat16")
    assert low.model.dtype == torch.bfloat16
    for module in (low.tower, low.projector):
        assert {p.dtype for p in module.parameters()} == {torch.bfloat16}
    graph = requests_mixed[0].visuals[0]
    got = low.graph_features(graph, "test")
    assert got.dtype == torch.bfloat16
    # upstream's computation in float64 on the same (bfloat16-rounded) weights and features
    x = torch.as_tensor(graph["x"]).to(torch.bfloat16)
    edges = [tuple(e) for e in np.asarray(graph["edge_index"]).T.tolist()]
    params = {k: v.double() for k, v in low.projector.state_dict().items()}
    expected = reference_tower(low.tower, x, edges) @ params["weight"].T + params["bias"]
    torch.testing.assert_close(got.double(), expected, atol=0.1, rtol=0.05)


@pytest.fixture
def transformers_warnings():
    """Warnings that transformers logs (its own logging, not loguru) while the test runs."""
    import logging

    seen: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: seen.append(record.getMessage())
    root = logging.getLogger("transformers")
    root.addHandler(handler)
    yield seen
    root.removeHandler(handler)


def test_only_truly_unexpected_checkpoint_keys_warn(tiny_graphgpt, tmp_path, transformers_warnings):
    import shutil

    checkpoint, graphclip = tiny_graphgpt
    adapter_for(tiny_graphgpt)
    assert not [w for w in transformers_warnings if "graph_projector" in w or "graph_tower" in w]
    # a key that nothing reads still warns, and the graph keys stay silent beside it
    extra = shutil.copytree(checkpoint, tmp_path / "extra-key")
    index = json.loads((extra / "pytorch_model.bin.index.json").read_text())
    shard = sorted(set(index["weight_map"].values()))[0]
    tensors = torch.load(extra / shard, weights_only=True)
    tensors["model.lm_extra_head.weight"] = torch.zeros(2, 2)
    torch.save(tensors, extra / shard)
    index["weight_map"]["model.lm_extra_head.weight"] = shard
    (extra / "pytorch_model.bin.index.json").write_text(json.dumps(index))
    transformers_warnings.clear()
    GraphGPTTextdom(pretrained=str(extra), graph_tower=str(graphclip), device="cpu")
    reports = [w for w in transformers_warnings if "model.lm_extra_head.weight" in w]
    assert reports and not [w for w in reports if "graph_projector" in w or "graph_tower" in w]
