"""llava_next_textdom: probe on the stock AnyRes layout, FasterVLM per-crop pruning against a hand-built input."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from PIL import Image

from lmms_textdom.models.base import Request
from lmms_textdom.models.llava_next.adapter import LlavaNextTextdom
from lmms_textdom.editing.pruning import kept_count
from lmms_textdom.tiny.llava_next import save_llava_next
from tests.lmms_runs import run_cli, samples_of
from tests.test_probe import assert_matches_eager

NEW_TOKENS = 5


def wide_image(seed: int, width: int = 70) -> Image.Image:
    return Image.fromarray((np.random.default_rng(seed).random((40, width, 3)) * 255).astype("uint8"))


@pytest.fixture(scope="module")
def next_dir(tmp_path_factory):
    return save_llava_next(tmp_path_factory.mktemp("next") / "tiny-llava-next")


@pytest.fixture(scope="module")
def requests_next():
    return [
        Request("what is it ?", [wide_image(1)], {}, {"max_new_tokens": NEW_TOKENS}),
        Request("answer with the option letter", [wide_image(2, 30), wide_image(3)], {}, {"max_new_tokens": NEW_TOKENS}),
    ]


def test_probe_matches_eager_on_the_anyres_layout(next_dir, requests_next):
    adapter = LlavaNextTextdom(pretrained=str(next_dir), device="cpu")
    prepared = adapter.prepare(requests_next)
    assert prepared.classes.counts()[0][1] == 91, "base view + 2 x 2 crops, unpadded, with newline tokens"
    assert_matches_eager(adapter.model, prepared.inputs, prepared.classes, adapter.tokenizer.pad_token_id)


def test_fastervlm_per_crop_pruning_equals_hand_built_input(next_dir, requests_next):
    adapter = LlavaNextTextdom(pretrained=str(next_dir), device="cpu", prune_ratio=0.5)
    ((text, payload),) = adapter._run_batch(requests_next[:1])
    payload = json.loads(payload)
    model, processor = adapter.model, adapter.processor
    config = model.config
    # by hand: eager CLIP on every crop, [CLS] row -> top-T per crop, base view first, no newlines
    pixels = processor(images=[requests_next[0].visuals[0]], text=["<image>"], return_tensors="pt")["pixel_values"][0]
    eager = copy.deepcopy(model.model.vision_tower)
    eager.set_attn_implementation("eager")
    out = eager(pixels, output_attentions=True, output_hidden_states=True)
    cls_rows = out.attentions[config.vision_feature_layer][:, :, 0, 1:].mean(1)
    crop_features = model.model.multi_modal_projector(out.hidden_states[config.vision_feature_layer][:, 1:])
    t = kept_count(25, 0.5)
    kept = torch.cat([f[sorted(torch.argsort(s, descending=True)[:t].tolist())] for f, s in zip(crop_features, cls_rows)])
    assert kept.shape[0] == 5 * t == payload["stats"]["counts"][1] == payload["settings"]["nontext_kept"]
    prompt = adapter.prompt(requests_next[0].context, 1).replace("<image>", "<image>" * kept.shape[0])
    ids = processor.tokenizer(prompt, return_tensors="pt")["input_ids"]
    embeds = model.get_input_embeddings()(ids)
    embeds[ids == config.image_token_id] = kept
    by_hand = model.generate(inputs_embeds=embeds, attention_mask=torch.ones_like(ids), max_new_tokens=NEW_TOKENS, do_sample=False)
    assert text == processor.tokenizer.decode(by_hand[0], skip_special_tokens=True)
    assert payload["settings"]["prune_method"] == "cls" and payload["settings"]["nontext_original"] == 91


def test_counts_with_pruning_and_replication(next_dir, requests_next):
    adapter = LlavaNextTextdom(pretrained=str(next_dir), device="cpu", prune_ratio=0.9, nontext_repeat=3)
    counts = [json.loads(p)["stats"]["counts"][1] for _, p in adapter._run_batch(requests_next)]
    t = kept_count(25, 0.9)
    assert counts == [3 * 5 * t, 3 * (3 + 5) * t]  # 40x70 -> 5 crops, 40x30 -> 3 crops
    replicated = LlavaNextTextdom(pretrained=str(next_dir), device="cpu", nontext_repeat=2)
    plain = LlavaNextTextdom(pretrained=str(next_dir), device="cpu")
    assert [json.loads(p)["stats"]["counts"][1] for _, p in replicated._run_batch(requests_next)] == [
        2 * json.loads(p)["stats"]["counts"][1] for _, p in plain._run_batch(requests_next)
    ]


def test_cli_runs_llava_next_with_pruning(next_dir, mmmu_data_root, tmp_path):
    done = run_cli("llava_next_textdom", f"pretrained={next_dir},prune_ratio=0.75", "mmmu_pro_standard_textdom", tmp_path, mmmu_data_root, "--limit", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    for row in samples_of(tmp_path, "mmmu_pro_standard_textdom").values():
        settings = row["textdom"]["settings"]
        assert settings["model"] == "llava_next_textdom" and settings["prune_ratio"] == 0.75
        assert row["textdom"]["stats"]["counts"][1] == settings["nontext_kept"] and row["mdi_late"] is not None
