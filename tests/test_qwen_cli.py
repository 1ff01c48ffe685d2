"""qwen2_5_vl_textdom on the MMMU-Pro tasks through the real lmms-eval CLI, loading a saved tiny checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import Qwen2_5_VLForConditionalGeneration

from lmms_textdom.integration.data import hub_dataset
from lmms_textdom.integration.hook import METRIC_NAMES
from lmms_textdom.models.qwen2_5_vl.processor import load_qwen_processor
from lmms_textdom.tasks.mmmu_pro.utils import doc_to_text, doc_to_visual
from tests.lmms_runs import results_of, run_cli_ok, samples_of
from tests.oracle import eager_class_masses

SUBTASKS = ("mmmu_pro_standard_textdom", "mmmu_pro_vision_textdom")
DIRECT = "Answer with the option letter from the given choices directly."


@pytest.fixture(scope="module")
def qwen_run(tiny_qwen_dir, mmmu_data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("qwen_run")
    return run_cli_ok("qwen2_5_vl_textdom", f"pretrained={tiny_qwen_dir}", "mmmu_pro_textdom", out, mmmu_data_root, "--batch_size", "2")


def test_results_table_has_accuracy_and_the_six_metrics(qwen_run):
    results = results_of(qwen_run)["results"]
    for name in (*SUBTASKS, "mmmu_pro_textdom"):
        assert "mmmu_acc,none" in results[name]
        assert all(isinstance(results[name][f"{m},none"], float) for m in METRIC_NAMES), name
    assert results["mmmu_pro_textdom"]["textdom,none"] == 12


def test_sample_log_masses_equal_eager_attention(qwen_run, tiny_qwen_dir, mmmu_data_root, monkeypatch):
    monkeypatch.setenv("LMMS_TEXTDOM_DATA", str(mmmu_data_root))
    logged = samples_of(qwen_run, SUBTASKS[0])
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_qwen_dir, dtype=torch.float32)
    processor = load_qwen_processor(str(tiny_qwen_dir))
    for doc in hub_dataset("MMMU/MMMU_Pro", "standard (10 options)", "test"):
        images = doc_to_visual(doc)
        content = [{"type": "image"}] * len(images) + [{"type": "text", "text": doc_to_text(doc, {"prompt": DIRECT})}]
        prompt = processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True)
        inputs = processor(text=[prompt], images=images, return_tensors="pt")  # the stock processor call
        class_ids = (inputs["input_ids"] == model.config.image_token_id).long() * 1
        row = logged[doc["id"]]["textdom"]
        assert row["settings"]["model"] == "qwen2_5_vl_textdom" and row["stats"]["classes"] == ["text", "image", "video"]
        _, (masses,) = eager_class_masses(model, dict(inputs), class_ids, 2, [row["stats"]["rows"]], max_new_tokens=64)
        logged_mass = np.asarray(row["stats"]["mass"])
        np.testing.assert_allclose(logged_mass[:, :2], masses[:, :2], atol=1e-4)
        assert not logged_mass[:, 2].any(), "no video in MMMU-Pro"
        assert row["stats"]["counts"][1] == int(class_ids.sum())


def test_pruned_run_records_the_method(tiny_qwen_dir, mmmu_data_root, tmp_path):
    model_args = f"pretrained={tiny_qwen_dir},prune_ratio=0.5,nontext_repeat=2"
    run_cli_ok("qwen2_5_vl_textdom", model_args, SUBTASKS[1], tmp_path, mmmu_data_root, "--batch_size", "2", "--limit", "2")
    rows = samples_of(tmp_path, SUBTASKS[1]).values()
    assert len(rows) == 2
    for row in rows:
        settings, counts = row["textdom"]["settings"], row["textdom"]["stats"]["counts"]
        assert settings["prune_method"] == "received" and settings["prune_ratio"] == 0.5
        assert counts[1] == 2 * settings["nontext_kept"] and settings["nontext_kept"] < settings["nontext_original"]
        assert row["mdi_late"] is not None
