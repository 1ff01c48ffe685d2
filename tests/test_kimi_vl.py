"""kimi_vl_textdom: the original-layout checkpoint on the native classes, checked against independent references."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import tiktoken
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file, save_file
from tiktoken.load import load_tiktoken_bpe

from lmms_textdom.core.errors import UsageError
from lmms_textdom.core.modality import classify_tokens
from lmms_textdom.core.probe import AttentionProbe, output_lengths
from lmms_textdom.models.base import Request
from lmms_textdom.models.kimi_vl.adapter import KimiVLTextdom
from lmms_textdom.models.kimi_vl.checkpoint import load_kimi_vl, native_config, read_kimi_config
from lmms_textdom.models.kimi_vl.images import KimiImageRules, image_inputs
from lmms_textdom.models.kimi_vl.inputs import MEDIA_PAD, KimiProcessor, render_chat
from lmms_textdom.models.kimi_vl.tokenizer import PATTERN, load_kimi_tokenizer
from tests.conftest import random_image
from tests.kimi_reference import deepseek_logits, moonvit_features
from tests.oracle import eager_class_masses

NEW_TOKENS = 5


@pytest.fixture(scope="module")
def original(tiny_kimi_dir):
    """(config.json dict, state dict) exactly as the checkpoint stores them."""
    return json.loads((tiny_kimi_dir / "config.json").read_text()), load_file(str(tiny_kimi_dir / "model.safetensors"))


@pytest.fixture(scope="module")
def kimi(tiny_kimi_dir):
    """(native model with the eager expert loop, processor) loaded from the checkpoint folder."""
    path = str(tiny_kimi_dir)
    model = load_kimi_vl(path, native_config(read_kimi_config(path)), dtype=torch.float32, experts_implementation="eager")
    model.generation_config.pad_token_id = load_kimi_tokenizer(path).pad_token_id
    return model.eval(), KimiProcessor(load_kimi_tokenizer(path), KimiImageRules.from_checkpoint(path))


def grids(inputs):
    return [tuple(g[1:]) for g in inputs["image_grid_thw"].tolist()]


# ----- checkpoint --------------------------------------------------------------------------------


def test_checkpoint_is_in_the_original_layout_and_every_tensor_is_used(original, kimi):
    config, sd = original
    assert config["model_type"] == "kimi_vl" and config["vision_config"]["model_type"] == "moonvit"
    for key in ("vision_tower.encoder.blocks.0.wqkv.weight", "vision_tower.encoder.blocks.1.norm0.bias",
                "vision_tower.encoder.blocks.0.mlp.fc0.weight", "vision_tower.patch_embed.pos_emb.weight",
                "language_model.model.layers.1.mlp.experts.3.down_proj.weight", "multi_modal_projector.linear_1.weight",
                "language_model.lm_head.weight", "language_model.model.layers.2.mlp.gate.e_score_correction_bias"):  # fmt: skip
        assert key in sd, key
    model, _ = kimi
    native = model.state_dict()
    # every original tensor lands somewhere: the element counts match one to one
    assert sum(t.numel() for t in sd.values()) == sum(t.numel() for t in native.values())
    assert torch.equal(native["lm_head.weight"], sd["language_model.lm_head.weight"])  # untied
    assert torch.equal(native["model.mm_projector.in_proj.weight"], sd["multi_modal_projector.linear_1.weight"])
    gate_up = native["model.language_model.layers.1.mlp.experts.gate_up_proj"]
    expert = "language_model.model.layers.1.mlp.experts.2"
    assert torch.equal(gate_up[2], torch.cat([sd[f"{expert}.gate_proj.weight"], sd[f"{expert}.up_proj.weight"]]))


def test_a_key_left_over_or_missing_fails_loudly_naming_it(tiny_kimi_dir, original, tmp_path):
    config, sd = original
    broken = tmp_path / "broken"
    shutil.copytree(tiny_kimi_dir, broken)
    tampered = {k: v for k, v in sd.items() if k != "multi_modal_projector.linear_2.bias"}
    tampered["vision_tower.encoder.blocks.0.extra_scale"] = torch.ones(3)
    save_file(tampered, str(broken / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(RuntimeError, match=r"(?s)missing_keys: model\.mm_projector\.out_proj\.bias.*unexpected_keys: .*extra_scale"):
        load_kimi_vl(str(broken), native_config(config), dtype=torch.float32)


# ----- tokenizer and prompt ----------------------------------------------------------------------


def test_tokenizer_equals_tiktoken_on_the_checkpoint_files(tiny_kimi_dir, kimi):
    _, processor = kimi
    ranks = load_tiktoken_bpe(str(tiny_kimi_dir / "tiktoken.model"))
    added = json.loads((tiny_kimi_dir / "tokenizer_config.json").read_text())["added_tokens_decoder"]
    specials = {entry["content"]: int(i) for i, entry in added.items()}
    encoding = tiktoken.Encoding("kimi", pat_str=PATTERN, mergeable_ranks=ranks, special_tokens=specials)
    for text in ("the cat sat on the mat, WHAT's 12345 中文字符 ok\n\n  x  ", render_chat([{"role": "user", "content": "hi"}]),
                 f"<|media_start|>image<|media_content|>{MEDIA_PAD * 3}<|media_end|>Question: A. 3 B. 4"):  # fmt: skip
        ids = processor.tokenizer(text)["input_ids"]
        assert ids == encoding.encode(text, allowed_special="all")
        assert processor.tokenizer.decode(ids) == text
    assert processor.media_pad_id == len(ranks) + 21 and processor.tokenizer.padding_side == "left"


def test_checkpoint_template_and_documented_layout_render_the_same(kimi):
    _, processor = kimi
    conversations = [
        [{"role": "user", "content": [{"type": "text", "text": "no image"}]}],
        [{"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "which ?"}]}],
        [{"role": "system", "content": "be brief"}, {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "x"}]}],
    ]
    for messages in conversations:
        assert processor.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False) == render_chat(messages)
    assert processor.prompt("which ?", 2) == render_chat(conversations[1])
    default_system = "<|im_system|>system<|im_middle|>You are a helpful assistant<|im_end|>"
    assert render_chat(conversations[0]).startswith(default_system + "<|im_user|>user")


def test_the_template_comes_from_the_checkpoints_files_else_the_documented_layout(tiny_kimi_dir, tmp_path):
    for name in ("tiktoken.model", "config.json", "preprocessor_config.json"):
        shutil.copy(tiny_kimi_dir / name, tmp_path / name)
    config = json.loads((tiny_kimi_dir / "tokenizer_config.json").read_text())
    template = config.pop("chat_template")
    config["bos_token"] = {"content": "[BOS]", "special": True}  # serialized AddedToken form
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    rules = KimiImageRules.from_checkpoint(str(tmp_path))
    bare = KimiProcessor(load_kimi_tokenizer(str(tmp_path)), rules)
    assert bare.tokenizer.chat_template is None and bare.tokenizer.bos_token == "[BOS]"
    assert bare.prompt("which ?", 1) == render_chat([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "which ?"}]}])
    (tmp_path / "chat_template.jinja").write_text(template.replace("You are a helpful assistant", "Be brief"))
    assert "<|im_middle|>Be brief<|im_end|>" in KimiProcessor(load_kimi_tokenizer(str(tmp_path)), rules).prompt("which ?", 1)


# ----- image preprocessing -----------------------------------------------------------------------


def reference_patches(image: Image.Image, limit: int, mean, std) -> tuple[torch.Tensor, tuple[int, int]]:
    """Kimi-VL's processor steps in torch: downscale over ``limit`` patches, zero-pad to 28, normalise, unfold."""
    w, h = image.size
    if (w // 14) * (h // 14) > limit:
        scale = (limit / ((w // 14) * (h // 14))) ** 0.5
        image = image.resize((int(w * scale), int(h * scale)), Image.Resampling.BICUBIC)
    x = torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1).float().div(255)
    x = F.pad(x, (0, -x.shape[2] % 28, 0, -x.shape[1] % 28))  # pixel zeros, before normalising
    x = (x - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
    rows, cols = x.shape[1] // 14, x.shape[2] // 14
    patches = x.unfold(1, 14, 14).unfold(2, 14, 14)  # (3, rows, cols, 14, 14)
    return patches.permute(1, 2, 0, 3, 4).reshape(rows * cols, 3, 14, 14), (rows, cols)


def test_preprocessing_follows_kimi_rules_with_the_configs_mean_and_std(tmp_path, logged_warnings):
    mean, std = (0.3, 0.4, 0.5), (0.2, 0.25, 0.3)
    config = {"in_token_limit": 64, "patch_size": 14, "merge_kernel_size": [2, 2], "pad_input": True,
              "image_mean": mean, "image_std": std}  # fmt: skip
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(config))
    rules = KimiImageRules.from_checkpoint(str(tmp_path))
    # as is (8 x 8 patches = the limit), padded (150 x 40 -> 168 x 56), downscaled (300 x 200 -> 21*14 patches > 64)
    cases = {(112, 112): (8, 8), (150, 40): (4, 12), (300, 200): (8, 10), (47, 331): (24, 4)}
    for seed, ((w, h), grid) in enumerate(cases.items()):
        image = random_image(seed, max(w, h)).resize((w, h))
        ours, our_grid = rules.patches(image)
        expected, expected_grid = reference_patches(image, 64, mean, std)
        assert our_grid == expected_grid == grid
        torch.testing.assert_close(ours, expected, atol=1e-6, rtol=0)
        assert rules.tokens(image) == grid[0] * grid[1] // 4
    del config["image_mean"]  # the original processor then falls back to CLIP's mean, and says so here
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(config))
    rules = KimiImageRules.from_checkpoint(str(tmp_path))
    assert rules.image_mean == (0.48145466, 0.4578275, 0.40821073) and rules.image_std == std
    assert any("has no image_mean" in w for w in logged_warnings)


# ----- image features and language model vs references ---------------------------------------


@pytest.mark.parametrize("sizes", [[(98, 70)], [(112, 112), (150, 40), (56, 56), (70, 98)]], ids=["one", "several"])
def test_image_features_equal_a_moonvit_reference(kimi, original, sizes):
    model, processor = kimi
    config, sd = original
    images = [random_image(i, max(s)).resize(s) for i, s in enumerate(sizes)]
    inputs = image_inputs(processor.rules, images)
    assert any(g != (4, 4) for g in grids(inputs)), "the position table must be interpolated somewhere"
    with torch.no_grad():
        ours = model.model.get_image_features(inputs["pixel_values"], inputs["image_grid_thw"]).pooler_output
    expected = moonvit_features(sd, config, inputs["pixel_values"], grids(inputs))
    assert [f.shape[0] for f in ours] == [r * c // 4 for r, c in grids(inputs)]
    for a, b in zip(ours, expected):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_text_logits_equal_a_deepseek_v3_reference(kimi, original):
    model, processor = kimi
    config, sd = original
    images = [random_image(1, 112), random_image(2, 56)]
    inputs = processor([processor.prompt("which option is correct ? the first", 2)], images)
    ids, image = inputs["input_ids"], inputs["input_ids"] == model.config.image_token_id
    with torch.no_grad():
        out = model(**inputs)
        embeds = sd["language_model.model.embed_tokens.weight"][ids.masked_fill(image, 0)]
        embeds[image] = torch.cat(out.image_outputs.pooler_output)
        expected = deepseek_logits(sd, config, embeds)
    torch.testing.assert_close(out.logits, expected, atol=1e-5, rtol=0)
    # the MoE layers route tokens to different experts (the test would not see a routing error otherwise)
    scores = F.linear(embeds[0], sd["language_model.model.layers.1.mlp.gate.weight"])
    assert len(set(scores.topk(2).indices.flatten().tolist())) > 2


# ----- probe -------------------------------------------------------------------------------------


def test_probe_matches_eager_attention_on_a_padded_batch(kimi):
    model, processor = kimi
    prompts = [processor.prompt("what is shown in the picture , the chart or the table ?", 1), processor.prompt("which ?", 2)]
    inputs = processor(prompts, [random_image(1, 112), random_image(2, 56), random_image(3, 70).resize((150, 40))])
    assert (inputs["attention_mask"][:, 0] == 0).any(), "the batch must be left-padded"
    classes = classify_tokens(inputs["input_ids"], {"image": model.config.image_token_id}, inputs["attention_mask"])
    with AttentionProbe(model, classes) as probe:
        out = model.generate(**inputs, max_new_tokens=NEW_TOKENS, do_sample=False)
    prompt_len = inputs["input_ids"].shape[1]
    lengths = output_lengths(out[:, prompt_len:], model.generation_config.eos_token_id, model.generation_config.pad_token_id)
    sequences, expected = eager_class_masses(model, inputs, classes.ids, len(classes.names), lengths, NEW_TOKENS)
    assert torch.equal(sequences, out), "eager and probed generation chose different tokens"
    stats = probe.stats(lengths)
    assert [s.counts[1] for s in stats] == [16, 4 + 12]
    assert len(stats[0].mass) == model.config.text_config.num_hidden_layers
    for s, ref in zip(stats, expected):
        np.testing.assert_allclose(np.column_stack([s.mass, s.generated]), ref, atol=1e-5, rtol=0)


# ----- pruning and replication -------------------------------------------------------------------


def eager_received(tower, inputs) -> list[torch.Tensor]:
    """Merged-token scores from the eager weights of the tower's last block: head mean, summed over
    queries, averaged over each 2 x 2 patch group (patches are in raster order per image)."""
    import copy
    import sys

    eager = copy.deepcopy(tower)
    eager.set_attn_implementation("eager")
    module = sys.modules[type(eager.layers[0].attn).__module__]
    target, original, weights = eager.layers[-1].attn, module.eager_attention_forward, []

    def spy(attention, *args, **kwargs):
        out = original(attention, *args, **kwargs)
        if attention is target:
            weights.append(out[1])  # (1, heads, n, n) for one image
        return out

    module.eager_attention_forward = spy
    try:
        with torch.no_grad():
            eager(inputs["pixel_values"], grid_thw=inputs["image_grid_thw"])
    finally:
        module.eager_attention_forward = original
    scores = []
    for w, (rows, cols) in zip(weights, grids(inputs)):
        received = w[0].double().mean(0).sum(0).view(rows, cols)
        scores.append(F.avg_pool2d(received[None, None], 2).flatten())
    return scores


@pytest.fixture(scope="module")
def pruning_adapter(tiny_kimi_dir):
    return KimiVLTextdom(pretrained=str(tiny_kimi_dir), device="cpu", prune_ratio=0.75, nontext_repeat=2)


def test_pruning_keeps_the_most_received_tokens_in_order_and_replicates_them(pruning_adapter, kimi):
    adapter = pruning_adapter
    sizes = [(112, 112), (150, 40), (70, 98)]
    images = [random_image(i, max(size)).resize(size) for i, size in enumerate(sizes, start=1)]
    requests = [Request("what is shown ?", images[:1], {}, {}), Request("which option is correct ? the first", images[1:], {}, {})]
    plain = adapter.processor([adapter.processor.prompt(r.context, len(r.visuals)) for r in requests], images)
    features, scores = adapter.image_features(plain)
    expected = eager_received(adapter.model.model.vision_tower, plain)
    for ours, ref in zip(scores, expected):
        torch.testing.assert_close(ours.double(), ref, atol=1e-5, rtol=0)
    prepared = adapter.prepare(requests)
    assert adapter.settings()["prune_method"] == "received"
    image = prepared.classes.ids == prepared.classes.names.index("image")
    # 16, 12 and 12 merged tokens (8x8, 4x12, 8x6 patches) keep 4, 3 and 3, each image's kept run written twice
    assert [f.shape[0] for f in features] == [16, 12, 12]
    assert [s["nontext_kept"] for s in prepared.sample_settings] == [4, 3 + 3]
    assert image.sum(1).tolist() == [2 * 4, 2 * (3 + 3)]
    rows = prepared.inputs["inputs_embeds"][image]
    kept = [f[ref.topk(k).indices.sort().values] for f, ref, k in zip(features, expected, (4, 3, 3))]
    torch.testing.assert_close(rows, torch.cat([kept[0], kept[0], kept[1], kept[1], kept[2], kept[2]]), atol=0, rtol=0)


def test_the_edit_path_with_nothing_edited_generates_what_the_plain_path_does(tiny_kimi_dir):
    """Embeddings built by the adapter (no pruning, one copy) give the tokens and masses of the model's own path."""
    adapter = KimiVLTextdom(pretrained=str(tiny_kimi_dir), device="cpu")
    requests = [Request("what is shown ?", [random_image(1, 112)], {}, {}),
                Request("which ?", [random_image(2, 56), random_image(3, 84)], {}, {})]  # fmt: skip
    plain = adapter.prepare(requests)
    edited = adapter.edited_inputs(plain.inputs, plain.classes)
    assert set(edited.inputs) == {"inputs_embeds", "attention_mask"} and torch.equal(edited.classes.ids, plain.classes.ids)
    results = []
    for prepared in (plain, edited):
        with torch.inference_mode(), AttentionProbe(adapter.model, prepared.classes) as probe:
            out = adapter.model.generate(**prepared.inputs, max_new_tokens=NEW_TOKENS, do_sample=False)
        new = out[:, plain.inputs["input_ids"].shape[1] :] if "input_ids" in prepared.inputs else out
        lengths = output_lengths(new, adapter.model.generation_config.eos_token_id, adapter.tokenizer.pad_token_id)
        results.append((new, probe.stats(lengths)))
    (tokens, stats), (edited_tokens, edited_stats) = results
    assert torch.equal(tokens, edited_tokens)
    for a, b in zip(stats, edited_stats):
        np.testing.assert_allclose(a.mass, b.mass, atol=1e-5)


# ----- bad input ---------------------------------------------------------------------------------


def test_an_image_beyond_the_position_table_is_refused_before_the_model_runs(tiny_kimi_dir):
    adapter = KimiVLTextdom(pretrained=str(tiny_kimi_dir), device="cpu")
    strip = Image.new("RGB", (7200, 10))  # under the token budget, padded to 2 x 516 patches: over the 512-per-side table
    with pytest.raises(UsageError, match=r"7200x10 px image becomes 2x516 patches .* allows 1 to 512 per side"):
        adapter.prepare([Request("x", [strip], {}, {})])
    with pytest.raises(UsageError, match="takes PIL images; got a ndarray"):
        adapter.prepare([Request("x", [np.zeros((4, 4, 3))], {}, {})])


@pytest.mark.parametrize("side,accepted", [(511, True), (512, True), (513, False)])
def test_a_patch_grid_of_up_to_512_per_side_fits_the_position_table(side, accepted):
    # MoonViT's rotary table holds positions 0-511: 512 patches on a side fit, 513 do not; merge 1 x 1
    # (no padding to even grids) and no token budget let the grid be any size
    rules = KimiImageRules(in_token_limit=10**6, merge_kernel_size=(1, 1))
    for size in ((side * 14, 14), (14, side * 14)):
        image = Image.new("RGB", size)
        if accepted:
            assert sorted(rules.grid(image)) == [1, side]
        else:
            with pytest.raises(UsageError, match=f"becomes .*{side}.* patches .* allows 1 to 512 per side"):
                rules.grid(image)
    # Kimi-VL's own 2 x 2 merge: a 7168 x 28 px image is 2 x 512 patches, one more merged token column is too many
    merged = KimiImageRules(in_token_limit=10**6)
    assert merged.grid(Image.new("RGB", (7168, 28))) == (2, 512)
    with pytest.raises(UsageError, match="2x514 patches"):
        merged.grid(Image.new("RGB", (7169, 28)))


def test_other_checkpoints_and_remote_code_are_refused(tiny_llava_dir, tiny_kimi_dir):
    with pytest.raises(UsageError, match=r"loads Kimi-VL checkpoints \(model_type 'kimi_vl'.*model_type 'llava'"):
        KimiVLTextdom(pretrained=str(tiny_llava_dir), device="cpu")
    with pytest.raises(UsageError, match="never runs the checkpoint's remote code"):
        KimiVLTextdom(pretrained=str(tiny_kimi_dir), device="cpu", trust_remote_code=True)
    with pytest.raises(UsageError, match=r"prune_ratio=1.5 is invalid"):
        KimiVLTextdom(pretrained=str(tiny_kimi_dir), prune_ratio=1.5)


def test_a_padded_pruned_batch_gives_each_sample_what_it_gets_alone(tiny_kimi_dir):
    from tests.adapter_runs import assert_batch_equals_single

    requests = [Request("what is shown in the picture , the chart or the table ?", [random_image(1, 112)], {}, {"max_new_tokens": 4}),
                Request("which ?", [random_image(2, 56), random_image(3, 70).resize((150, 40))], {}, {"max_new_tokens": 4})]  # fmt: skip
    assert_batch_equals_single(KimiVLTextdom, tiny_kimi_dir, requests, prune_ratio=0.5, nontext_repeat=2)
