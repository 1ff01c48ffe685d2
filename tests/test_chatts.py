"""chatts_textdom on tiny ChatTS checkpoints of both releases: loading, encoder, inputs, probe vs eager, errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open

from lmms_textdom.core.errors import UsageError
from lmms_textdom.models.base import Request
from lmms_textdom.models.chatts.adapter import ChatTSTextdom
from lmms_textdom.models.chatts.inputs import chat_prompt, encode_series
from tests.oracle import eager_class_masses

PATCH = {"original": 8, "0801": 4}  # the tiny releases' patch sizes (real: 16 and 8)


def adapter(folder, **kwargs) -> ChatTSTextdom:
    return ChatTSTextdom(pretrained=str(folder), device="cpu", **kwargs)


@pytest.fixture(scope="module")
def adapters(tiny_chatts_dirs):
    return {release: adapter(folder) for release, folder in tiny_chatts_dirs.items()}


def series(seed: int, length: int) -> list[float]:
    rng = np.random.default_rng(seed)
    return list(10 + 4 * np.sin(np.arange(length) / 3) + rng.standard_normal(length))


def request(question: str, *values, new_tokens: int = 5) -> Request:
    return Request(question, list(values), {}, {"max_new_tokens": new_tokens})


def checkpoint_tensors(folder, prefix: str) -> dict[str, torch.Tensor]:
    index = json.loads((folder / "model.safetensors.index.json").read_text())["weight_map"]
    out = {}
    for key, name in index.items():
        if key.startswith(prefix):
            with safe_open(str(folder / name), framework="pt") as handle:
                out[key[len(prefix) :]] = handle.get_tensor(key)
    return out


# ----- loading --------------------------------------------------------------------------------------


@pytest.mark.parametrize("release", ["original", "0801"])
def test_adapter_loads_a_checkpoint_folder_of_either_release(adapters, tiny_chatts_dirs, release):
    model = adapters[release]
    folder = tiny_chatts_dirs[release]
    assert model.chatts.release == release
    assert type(model.model).__mro__[1].__name__ == "Qwen2ForCausalLM"
    assert model.encoder.patch_size == PATCH[release]
    assert (model.encoder.position_embedding is not None) == (release == "0801")
    # every encoder tensor is the checkpoint's own, under its real name
    stored = checkpoint_tensors(folder, "ts_encoder.")
    assert set(stored) == set(model.encoder.state_dict())
    for key, tensor in stored.items():
        assert torch.equal(model.encoder.state_dict()[key], tensor), key
    lm_head = checkpoint_tensors(folder, "lm_head.")["weight"]
    assert torch.equal(model.model.lm_head.weight, lm_head)
    assert model.settings()["ts_release"] == release


# ----- encoder and value encoding ------------------------------------------------------------------


def reference_encoder(state: dict, ts: dict, release: str, raw_series: list[np.ndarray]) -> torch.Tensor:
    """ChatTS's encoder as upstream runs it: the processor's interleaved (value, 1) tensor zero-padded to the
    longest series, then per series: valid length from the mask, pad the last patch (zeros in the original
    release, the last value in 0801), position ids 0..vl-1 and ``max_sequence_length`` for pad slots."""
    longest = max(len(s) for s in raw_series)
    batch = torch.zeros(len(raw_series), 2 * longest, 1, dtype=torch.float16)
    for i, s in enumerate(raw_series):
        values, _ = encode_series(s, release)
        batch[i, : 2 * len(s), 0] = torch.stack([values, torch.ones_like(values)], -1).reshape(-1)
    x = batch.float().reshape(len(raw_series), -1, 2)
    size = ts["patch_size"]
    rows = []
    for i in range(x.shape[0]):
        valid = int(x[i, :, 1].sum())
        count = (valid + size - 1) // size
        values = x[i, :valid, 0]
        pad = count * size - valid
        filler = values[-1].repeat(pad) if release == "0801" else torch.zeros(pad)
        patches = torch.cat([values, filler]).reshape(count, size)
        if ts.get("use_position_embedding"):
            ids = torch.cat([torch.arange(valid), torch.full((pad,), ts["max_sequence_length"])]).reshape(count, size)
            embedded = F.embedding(ids, state["position_embedding.weight"])  # (count, size, dim)
            patches = torch.cat([patches, embedded.flatten(1)], dim=1)
        rows.append(patches)
    h = torch.cat(rows)
    linear = sorted({int(k.split(".")[1]) for k in state if k.startswith("mlp.")})
    for n, index in enumerate(linear):
        h = F.linear(h, state[f"mlp.{index}.weight"], state[f"mlp.{index}.bias"])
        if n < len(linear) - 1:
            h = F.gelu(h)
    return h


@pytest.mark.parametrize("release", ["original", "0801"])
def test_encoder_equals_the_upstream_reference(adapters, tiny_chatts_dirs, release):
    model = adapters[release]
    size = PATCH[release]
    lengths = [1, size, size + 1, 3 * size - 1, 30]  # partial and full last patches
    raw = [np.asarray(series(i, n)) for i, n in enumerate(lengths)]
    state = checkpoint_tensors(tiny_chatts_dirs[release], "ts_encoder.")
    expected = reference_encoder(state, model.chatts.ts, release, raw)
    ours = model.encoder([encode_series(s, release)[0] for s in raw])
    assert [o.shape[0] for o in ours] == [math.ceil(n / size) for n in lengths]
    torch.testing.assert_close(torch.cat(ours), expected, atol=1e-5, rtol=1e-5)
    # the padding rule matters: the other release's rule gives different outputs for a partial patch
    other = reference_encoder(state, model.chatts.ts, "0801" if release == "original" else "original", raw[2:3])
    assert not torch.allclose(ours[2][-1], other[-1], atol=1e-4)


def test_value_encoding_and_prefix_text_follow_the_release():
    values, prefix = encode_series(np.array([1.0, 2.0, 3.0, 10.0]), "original")
    assert prefix == "[Value Offset: -4.0000|Value Scaling: 2.0000]"  # centred max 6 -> scale 6 / 3
    np.testing.assert_allclose(values.float().numpy(), [-1.5, -1.0, -0.5, 3.0])
    assert values.dtype == torch.float16
    _, prefix = encode_series(np.array([1.0, 2.0, 3.0, 10.0]), "0801")
    assert prefix == "[offset=-4.0000|scaling=2.0000|length=4|max=10.0000|min=1.0000|left=1.0000|right=10.0000]"
    values, prefix = encode_series(np.array([0.5, -0.5, 2.0]), "original")  # |x - mean| < 3: no scaling
    assert prefix == "[Value Offset: -0.6667|Value Scaling: 1.0000]"
    np.testing.assert_allclose(values.float().numpy(), [-1 / 6, -7 / 6, 4 / 3], atol=1e-3)


# ----- inputs and replication ----------------------------------------------------------------------


@pytest.mark.parametrize("release", ["original", "0801"])
def test_position_counts_are_ceil_length_over_patch_times_k(tiny_chatts_dirs, adapters, release):
    size = PATCH[release]
    lengths = [[7], [size, 2 * size + 3], [1, 30, size + 1]]
    requests = [request(" and ".join(["<ts><ts/>"] * len(ls)) + " ?", *[series(j, n) for j, n in enumerate(ls)]) for ls in lengths]
    plain = adapters[release].prepare(requests)
    repeated_model = adapter(tiny_chatts_dirs[release], nontext_repeat=5)
    repeated = repeated_model.prepare(requests)
    for b, ls in enumerate(lengths):
        blocks = [math.ceil(n / size) for n in ls]
        text, ts = plain.classes.counts()[b]
        assert ts == sum(blocks)
        assert repeated.classes.counts()[b] == (text, 5 * sum(blocks))
        assert plain.sample_settings[b]["ts_patch_counts"] == blocks
        # each series' block is written 5 times in a row, in its own slot: contiguous runs of 5 * block
        row = repeated.classes.ids[b][repeated.inputs["attention_mask"][b] == 1]
        runs = [len(run) for run in "".join(map(str, row.tolist())).split("0") if run]
        assert runs == [5 * n for n in blocks]
        embeds = repeated.inputs["inputs_embeds"][b][repeated.inputs["attention_mask"][b] == 1][row == 1]
        first = embeds[: blocks[0]]
        for copy in range(5):
            assert torch.equal(embeds[copy * blocks[0] : (copy + 1) * blocks[0]], first)
    # the text, prefix included, is unchanged by replication
    for b in range(len(lengths)):
        keep = plain.inputs["attention_mask"][b] == 1
        text_plain = plain.inputs["inputs_embeds"][b][keep][plain.classes.ids[b][keep] == 0]
        keep_r = repeated.inputs["attention_mask"][b] == 1
        text_rep = repeated.inputs["inputs_embeds"][b][keep_r][repeated.classes.ids[b][keep_r] == 0]
        assert torch.equal(text_plain, text_rep)
        assert plain.classes.subclasses["ts_value_prefix"][b].sum() == repeated.classes.subclasses["ts_value_prefix"][b].sum() > 0


def test_value_prefix_positions_decode_to_the_prefix_text(adapters):
    model = adapters["0801"]
    values = [1.0, 2.0, 3.0, 10.0, 4.0]
    prepared = model.prepare([request("Look: <ts><ts/> now", values)])
    _, prefix = encode_series(np.array(values), "0801")
    prompt = chat_prompt(f"Look: {prefix}<ts><ts/> now")
    markers = model.tokenizer.convert_tokens_to_ids(["<ts>", "<ts/>"])
    text_ids = [t for t in model.tokenizer(prompt)["input_ids"] if t not in markers]
    classes = prepared.classes
    assert int((classes.ids[0] == 0).sum()) == len(text_ids) and int((classes.ids[0] == 1).sum()) == 2  # 5 values, patch 4
    in_prefix = classes.subclasses["ts_value_prefix"][0][classes.ids[0] == 0].tolist()
    assert model.tokenizer.decode([t for t, p in zip(text_ids, in_prefix) if p]).strip() == prefix


# ----- probe vs eager ------------------------------------------------------------------------------


def oracle_masses(model: ChatTSTextdom, prepared, rows: list[int], new_tokens: int):
    """Eager attention masses with three columns: plain text, time series, value prefix."""
    class_ids = prepared.classes.ids.clone()
    class_ids[prepared.classes.subclasses["ts_value_prefix"]] = 2
    inputs = {k: v.clone() for k, v in prepared.inputs.items()}
    return eager_class_masses(model.model, inputs, class_ids, 3, rows, new_tokens)


@pytest.mark.parametrize(("release", "repeat"), [("0801", 1), ("original", 5)])
def test_probe_masses_equal_eager_attention_in_a_left_padded_batch(tiny_chatts_dirs, adapters, release, repeat):
    model = adapters[release] if repeat == 1 else adapter(tiny_chatts_dirs[release], nontext_repeat=repeat)
    requests = [
        request("A long one: <ts><ts/> . what is the trend ?", series(1, 37)),
        request("Short: <ts><ts/>", series(2, 6)),
    ]
    prepared = model.prepare(requests)
    assert prepared.inputs["attention_mask"][1, 0] == 0  # the second sample is left-padded
    outputs = model._run_batch(requests)
    payloads = [json.loads(p) for _, p in outputs]
    rows = [p["stats"]["rows"] for p in payloads]
    sequences, masses = oracle_masses(model, prepared, rows, 5)
    for b, payload in enumerate(payloads):
        stats = payload["stats"]
        expected = masses[b]
        np.testing.assert_allclose(np.array(stats["mass"])[:, 0], expected[:, 0] + expected[:, 2], atol=1e-5)
        np.testing.assert_allclose(np.array(stats["mass"])[:, 1], expected[:, 1], atol=1e-5)
        np.testing.assert_allclose(stats["subclasses"]["ts_value_prefix"]["mass"], expected[:, 2], atol=1e-5)
        np.testing.assert_allclose(stats["generated"], expected[:, 3], atol=1e-5)
        assert expected[:, 2].sum() > 0 and payload["settings"]["nontext_repeat"] == repeat
    # correct positions: each padded sample measures what it measures alone
    for b, req in enumerate(requests):
        ((_, alone),) = model._run_batch([req])
        np.testing.assert_allclose(json.loads(alone)["stats"]["mass"], payloads[b]["stats"]["mass"], atol=1e-5)


# ----- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("question", "values", "message"),
    [
        ("<ts><ts/>", [[1.0, float("nan"), 2.0]], "time series 1 has a non-finite value \\(nan\\) at index 1"),
        ("<ts><ts/> and <ts><ts/>", [[1.0], []], "time series 2 is empty"),
        ("<ts><ts/> and <ts><ts/>", [[1.0, 2.0]], "the prompt has 2 <ts><ts/> placeholders but 1 time series were given"),
        ("no placeholder", [[1.0, 2.0]], "the prompt has 0 <ts><ts/> placeholders but 1 time series"),
        ("<ts> alone <ts><ts/>", [[1.0, 2.0]], "only as <ts><ts/> pairs"),
        ("<ts><ts/>", [[[1.0, 2.0], [3.0, 4.0]]], "one list of numbers \\(a univariate series\\)"),
    ],
)
def test_bad_series_or_prompts_get_a_clear_early_error(adapters, question, values, message):
    with pytest.raises(UsageError, match=message):
        adapters["0801"].prepare([request(question, *values)])


def test_a_series_longer_than_the_position_embedding_is_refused(adapters):
    with pytest.raises(UsageError, match="time series 1 has 600 values; this checkpoint takes at most 512"):
        adapters["0801"].prepare([request("<ts><ts/>", [0.0] * 600)])


def test_a_non_chatts_checkpoint_is_refused_before_loading(tmp_path):
    from lmms_textdom.tiny.chatts import build_chatts

    language_model, _, tok, _ = build_chatts("original")
    language_model.save_pretrained(tmp_path / "qwen2")  # a plain Qwen2 checkpoint: no ts section, no ts_encoder
    tok.save_pretrained(tmp_path / "qwen2")
    with pytest.raises(UsageError, match="is not a ChatTS checkpoint: its config.json has no `ts` section .*model_type 'qwen2'"):
        adapter(tmp_path / "qwen2")


def test_pruning_is_refused_with_the_reason(tiny_chatts_dirs):
    with pytest.raises(UsageError, match="prune_ratio is not supported"):
        adapter(tiny_chatts_dirs["0801"], prune_ratio=0.5)


def test_config_translation_keeps_the_language_model_and_refuses_other_variants(tiny_chatts_dirs):
    from lmms_textdom.models.chatts.config import parse_chatts_config

    raw = json.loads((tiny_chatts_dirs["0801"] / "config.json").read_text())
    config = parse_chatts_config(raw, "tiny")
    assert config.language_model.model_type == "qwen2" and config.language_model.rope_parameters["rope_theta"] == 1e6
    assert not hasattr(config.language_model, "ts") and not hasattr(config.language_model, "auto_map")
    assert config.release == "0801" and config.patch_size == 4
    with pytest.raises(UsageError, match="Qwen3-based ChatTS"):
        parse_chatts_config({**raw, "model_type": "qwen3", "architectures": ["Qwen3TSForCausalLM"]}, "tiny")
    with pytest.raises(UsageError, match="ts.hidden_size 16 differs"):
        parse_chatts_config({**raw, "ts": {**raw["ts"], "hidden_size": 16}}, "tiny")
