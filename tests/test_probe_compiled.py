"""The probe inside transformers' compiled decoding (static cache, torch.compile of the decoding step).

Generate compiles the decoding steps (``compile_config``; on a CPU only when asked) and runs the
prompt's pass eagerly. The probe must then record inside the compiled graph without breaking it
(``fullgraph=True`` fails on any graph break) and give eager attention's numbers, or refuse loudly.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch._dynamo.utils import counters
from transformers import Qwen2Config, Qwen2ForCausalLM

from lmms_textdom.analysis.knockout import KnockOut
from lmms_textdom.core.compiled import compiled_decoding
from lmms_textdom.core.probe import AttentionProbe, ProbeError, install
from lmms_textdom.tiny import build_llama
from lmms_textdom.tiny.common import instantiate, language_model_fields
from tests.test_probe import NEW_TOKENS, assert_matches_eager, llama_padded_batch, middle_is_image
from tests.test_text_parts import ADAPTERS, checkpoints, family_requests  # noqa: F401 (fixture)


def compiled(backend: str = "eager") -> dict:
    """Compiled decoding; dynamo's eager backend captures the same graph without inductor's code generation."""
    return compiled_decoding(backend)


@pytest.fixture()
def fresh_dynamo():
    torch._dynamo.reset()
    counters.clear()
    yield counters
    torch._dynamo.reset()


def graphs() -> int:
    return counters["stats"]["unique_graphs"]


def test_compiled_decoding_matches_eager_attention_in_one_graph(tiny_llama, fresh_dynamo):
    model, tok = tiny_llama
    model = copy.deepcopy(model)
    install(model)
    inputs, classes = llama_padded_batch(tok)
    plain = model.generate(**inputs, max_new_tokens=NEW_TOKENS, do_sample=False, **compiled())
    assert graphs() == 1, "generate must have compiled its decoding step"
    assert_matches_eager(model, inputs, classes, tok.pad_token_id, path="deferred", **compiled())
    # a second probe and a second batch of the same shape: no graph break, no recompilation
    assert_matches_eager(model, inputs, classes, tok.pad_token_id, path="deferred", **compiled())
    assert graphs() == 2, "the probe compiles once (the probe function, now recording), then reuses that graph"
    assert not counters["graph_break"]
    again = model.generate(**inputs, max_new_tokens=NEW_TOKENS, do_sample=False, **compiled())
    assert torch.equal(plain, again) and graphs() == 2, "without a probe the first graph serves again"


def test_compiled_decoding_without_padding_sees_keys_up_to_each_row(tiny_llama, fresh_dynamo):
    """Batch 1, no padding: the prompt's pass has no mask; the static cache's unwritten keys stay unseen."""
    model, tok = tiny_llama
    model = copy.deepcopy(model)
    inputs = tok(["the cat sat on the mat and looked at the dog"], return_tensors="pt")
    assert_matches_eager(model, inputs, middle_is_image(inputs), tok.pad_token_id, path="deferred", **compiled())
    assert graphs() == 1


def test_compiled_rows_in_several_passes_match_eager(tiny_llama, fresh_dynamo, monkeypatch):
    from lmms_textdom.core import probe as probe_module

    monkeypatch.setattr(probe_module, "FLUSH_STEPS", 2)  # 5 compiled rows: passes of 2, 2 and 1
    model, tok = tiny_llama
    model = copy.deepcopy(model)
    inputs, classes = llama_padded_batch(tok)
    assert_matches_eager(model, inputs, classes, tok.pad_token_id, path="deferred", **compiled())


def test_compiled_decoding_with_inductor_matches_eager(fresh_dynamo):
    """transformers' default backend (inductor, C++ on a CPU), kept small: it compiles for ~1 minute."""
    model, tok = build_llama(num_layers=2)
    inputs = tok(["the cat sat on the mat"], return_tensors="pt")
    assert_matches_eager(model, inputs, middle_is_image(inputs), tok.pad_token_id, path="deferred", **compiled("inductor"))
    assert graphs() == 1 and not counters["graph_break"]


def test_sliding_window_layers_refuse_compiled_decoding(tiny_llama, fresh_dynamo):
    _, tok = tiny_llama
    config = Qwen2Config(**language_model_fields(tok, 4, 64, 8, 2, 0.2), use_sliding_window=True, sliding_window=5, max_window_layers=2)
    model = instantiate(Qwen2ForCausalLM, config, tok, seed=0, attn_implementation="sdpa")
    inputs, classes = llama_padded_batch(tok)
    with pytest.raises(ProbeError, match=r"inside a compiled graph .* cannot record layers \[2, 3\] \(sliding-window attention\)"):
        with AttentionProbe(model, classes):
            model.generate(**inputs, max_new_tokens=NEW_TOKENS, do_sample=False, **compiled())
    assert not any(hasattr(m, "textdom_compiled_stash") for m in model.modules()), "the probe must disarm every layer"


def test_knockout_refuses_compiled_decoding(tiny_llama, fresh_dynamo):
    model, tok = tiny_llama
    model = copy.deepcopy(model)
    inputs, classes = llama_padded_batch(tok)
    with pytest.raises(ProbeError, match=r"cannot record layers \[1\] \(a knock-out or key sampler is attached"):
        with KnockOut(model, [1], classes), AttentionProbe(model, classes):
            model.generate(**inputs, max_new_tokens=NEW_TOKENS, do_sample=False, **compiled())


def test_model_compiled_as_a_whole_is_refused(tiny_llama):
    model, tok = tiny_llama
    model = copy.deepcopy(model)
    model.forward = torch.compile(model.forward, backend="eager")
    inputs = tok(["the cat sat on the mat"], return_tensors="pt")
    with pytest.raises(ProbeError, match="compiled as a whole"):
        with AttentionProbe(model, middle_is_image(inputs)):
            pass


def test_probe_leaves_no_state_on_the_model(tiny_llama):
    """Eager decoding with a static cache arms the layers for a compiled graph; exit disarms them."""
    model, tok = tiny_llama
    inputs, classes = llama_padded_batch(tok)
    with AttentionProbe(model, classes):
        model.generate(**inputs, max_new_tokens=2, do_sample=False, cache_implementation="static")
        assert all(hasattr(m.self_attn, "textdom_compiled_stash") for m in model.model.layers)
    assert not any(hasattr(m, "textdom_compiled_stash") for m in model.modules())
    assert not model.model._forward_pre_hooks, "the probe's cache hook must be gone"


def test_passes_that_bypass_the_probe_are_named(fresh_dynamo):
    """A copy of a model made after a compiled generate keeps the original's compiled call: its decoding
    steps run the original's layers, which no probe watches. The cache tells."""
    model, tok = build_llama(num_layers=2)
    inputs = tok(["the cat sat on the mat"], return_tensors="pt")
    model.generate(**inputs, max_new_tokens=3, do_sample=False, **compiled())
    copied = copy.deepcopy(model)
    with pytest.raises(ProbeError, match=r"the KV cache holds \d+ positions but only \d+ passed through the probe: 3 forward"):
        with AttentionProbe(copied, middle_is_image(inputs)):
            copied.generate(**inputs, max_new_tokens=4, do_sample=False, **compiled())


# ----- model_arg compile=true ------------------------------------------------------------------------


def llava_adapter(checkpoint, **model_args):
    from lmms_textdom.models.llava.adapter import LlavaHfTextdom

    return LlavaHfTextdom(pretrained=str(checkpoint), device="cpu", **model_args)


def test_compile_model_arg_records_what_eager_decoding_records(tiny_llava_dir, fresh_dynamo, monkeypatch):
    import json

    import numpy as np

    from lmms_textdom.models import base
    from lmms_textdom.models.base import Request
    from tests.conftest import random_image

    monkeypatch.setattr(base, "compiled_decoding", lambda: compiled_decoding("eager"))  # inductor would compile for minutes
    requests = [
        Request("what is shown in the image ?", [random_image(1)], {}, {"max_new_tokens": NEW_TOKENS}),
        Request("answer with the option letter from the given choices directly", [random_image(2)], {}, {"max_new_tokens": NEW_TOKENS}),
    ]
    eager = llava_adapter(tiny_llava_dir)._run_batch(requests)
    assert graphs() == 0
    compiled_run = llava_adapter(tiny_llava_dir, compile=True)._run_batch(requests)
    assert graphs() == 1, "compile=true must decode inside one compiled graph"
    for (text, payload), (eager_text, eager_payload) in zip(compiled_run, eager):
        ours, reference = json.loads(payload)["stats"], json.loads(eager_payload)["stats"]
        assert text == eager_text and ours["rows"] == reference["rows"] > 1
        np.testing.assert_allclose(ours["mass"], reference["mass"], atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "model_args,message",
    [
        ({"attn_implementation": "flash_attention_2"}, "compile=true needs attn_implementation=sdpa or eager"),
        ({"knockout_layers": "1"}, "knockout_layers and key_stats run in eager decoding only"),
        ({"key_stats": True}, "knockout_layers and key_stats run in eager decoding only"),
    ],
)
def test_compile_model_arg_refuses_what_it_cannot_decode_before_loading(tiny_llava_dir, model_args, message):
    from lmms_textdom.core.errors import UsageError

    with pytest.raises(UsageError, match=message):
        llava_adapter(tiny_llava_dir, compile=True, **model_args)


def test_compile_model_arg_names_the_family_it_cannot_run(tiny_kimi_dir):
    from lmms_textdom.core.errors import UsageError
    from lmms_textdom.models.kimi_vl.adapter import KimiVLTextdom

    with pytest.raises(UsageError, match=r"kimi_vl_textdom: compile=true is not supported: its latent attention \(MLA\)"):
        KimiVLTextdom(pretrained=str(tiny_kimi_dir), device="cpu", compile=True)


def test_a_layer_left_out_of_the_graph_is_refused(fresh_dynamo):
    """A layer run eagerly while the others decode inside the compiled graph: its rows would land on the prompt's."""
    from transformers import CompileConfig

    model, tok = build_llama(num_layers=3)
    layer = model.model.layers[1]
    layer.forward = torch.compiler.disable(layer.forward)  # a graph break: fullgraph must be off
    config = CompileConfig(fullgraph=False, backend="eager", mode=None)
    config._compile_all_devices = True
    inputs = tok(["the cat sat on the mat"], return_tensors="pt")
    with pytest.raises(ProbeError, match="layer 1 passed through the probe twice in one step"):
        with AttentionProbe(model, middle_is_image(inputs)):
            model.generate(**inputs, max_new_tokens=3, do_sample=False, cache_implementation="static", compile_config=config)


def test_max_new_tokens_bounds_the_compiled_buffers_and_is_held_to(tiny_llama, fresh_dynamo):
    """A static cache sized by a longer earlier call has room for far more rows than this call makes."""
    model, tok = tiny_llama
    model = copy.deepcopy(model)
    inputs, classes = llama_padded_batch(tok)
    model.generate(**inputs, max_new_tokens=40, do_sample=False, **compiled())  # the cache keeps this size
    with AttentionProbe(model, classes, max_new_tokens=NEW_TOKENS) as probe:
        model.generate(**inputs, max_new_tokens=NEW_TOKENS, do_sample=False, **compiled())
        assert {a.rows.shape[0] for a in probe._recorder._armed.values()} == {NEW_TOKENS}
    assert probe.steps == NEW_TOKENS
    with pytest.raises(ProbeError, match=r"more than the probe's buffers hold \(2\): max_new_tokens given to AttentionProbe"):
        with AttentionProbe(model, classes, max_new_tokens=2):
            model.generate(**inputs, max_new_tokens=NEW_TOKENS, do_sample=False, **compiled())


# ----- compile=true on every family that claims it (docs/big-models.md, "Compiled decoding") ------------


@pytest.mark.parametrize("family", ["llava_next", "qwen2_5_vl", "qwen2_audio", "videollama3", "chatts", "graphgpt"])
def test_every_family_records_under_compile_what_eager_decoding_records(family, checkpoints, tiny_videos, fresh_dynamo, monkeypatch):
    """Each family's own requests (Qwen2.5-VL: images and a video; left-padded batches of two) through its
    adapter, compile=false then compile=true: one graph, no break (fullgraph), the same answers and masses."""
    import json

    import numpy as np

    from lmms_textdom.models import base

    backend = "aot_eager" if family == "qwen2_5_vl" else "eager"  # aot_eager: the buffer writes functionalized, as for inductor
    monkeypatch.setattr(base, "compiled_decoding", lambda: compiled_decoding(backend))  # inductor would compile for minutes
    adapter = ADAPTERS[family]
    requests = [base.Request(r.context, r.visuals, r.doc, {"max_new_tokens": NEW_TOKENS}) for r in family_requests(family, tiny_videos)]
    eager = adapter(pretrained=str(checkpoints(family)), device="cpu")._run_batch(requests)
    assert graphs() == 0
    compiled_run = adapter(pretrained=str(checkpoints(family)), device="cpu", compile=True)._run_batch(requests)
    assert graphs() == 1 and not counters["graph_break"], "compile=true must decode inside one compiled graph"
    seen = set()
    for (text, payload), (eager_text, eager_payload) in zip(compiled_run, eager, strict=True):
        ours, reference = json.loads(payload)["stats"], json.loads(eager_payload)["stats"]
        assert text == eager_text and ours["rows"] == reference["rows"] > 1 and ours["counts"] == reference["counts"]
        assert sum(ours["counts"][1:]) > 0, "every request carries non-text positions"
        seen |= {name for name, count in zip(ours["classes"], ours["counts"]) if count}
        np.testing.assert_allclose(ours["mass"], reference["mass"], atol=1e-5, rtol=0)
    assert family != "qwen2_5_vl" or {"image", "video"} <= seen, seen
