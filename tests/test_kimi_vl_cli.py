"""kimi_vl_textdom on the MMMU-Pro tasks through the real lmms-eval CLI, loading the tiny original-layout checkpoint."""

from __future__ import annotations

import pytest

from lmms_textdom.editing.pruning import kept_count
from lmms_textdom.integration.data import hub_dataset
from lmms_textdom.integration.hook import METRIC_NAMES
from lmms_textdom.models.kimi_vl.images import KimiImageRules
from lmms_textdom.tasks.mmmu_pro.utils import doc_to_visual
from tests.lmms_runs import results_of, run_cli_ok, samples_of

SUBTASKS = ("mmmu_pro_standard_textdom", "mmmu_pro_vision_textdom")
CONFIGS = {"mmmu_pro_standard_textdom": "standard (10 options)", "mmmu_pro_vision_textdom": "vision"}


@pytest.fixture(scope="module")
def plain_run(tiny_kimi_dir, mmmu_data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("kimi_plain")
    return run_cli_ok("kimi_vl_textdom", f"pretrained={tiny_kimi_dir}", "mmmu_pro_textdom", out, mmmu_data_root, "--batch_size", "2")


@pytest.fixture(scope="module")
def edited_run(tiny_kimi_dir, mmmu_data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("kimi_edited")
    model_args = f"pretrained={tiny_kimi_dir},prune_ratio=0.75,nontext_repeat=2"
    return run_cli_ok("kimi_vl_textdom", model_args, "mmmu_pro_textdom", out, mmmu_data_root, "--batch_size", "2", "--limit", "3")


def image_tokens(tiny_kimi_dir, doc) -> list[int]:
    rules = KimiImageRules.from_checkpoint(str(tiny_kimi_dir))
    return [rules.tokens(image) for image in doc_to_visual(doc)]


@pytest.mark.parametrize("run,measured", [("plain_run", 12), ("edited_run", 6)])
def test_results_table_has_accuracy_and_the_six_metrics(run, measured, request):
    results = results_of(request.getfixturevalue(run))["results"]
    for name in (*SUBTASKS, "mmmu_pro_textdom"):
        assert "mmmu_acc,none" in results[name]
        assert all(isinstance(results[name][f"{m},none"], float) for m in METRIC_NAMES), name
    assert results["mmmu_pro_textdom"]["textdom,none"] == measured


def test_plain_run_marks_every_expanded_placeholder_as_image(plain_run, tiny_kimi_dir, mmmu_data_root, monkeypatch):
    monkeypatch.setenv("LMMS_TEXTDOM_DATA", str(mmmu_data_root))
    for task, config in CONFIGS.items():
        logged = samples_of(plain_run, task)
        for doc in hub_dataset("MMMU/MMMU_Pro", config, "test"):
            row = logged[doc["id"]]["textdom"]
            assert row["settings"]["model"] == "kimi_vl_textdom" and row["settings"]["prune_method"] is None
            assert row["stats"]["classes"] == ["text", "image"]
            assert row["stats"]["counts"][1] == sum(image_tokens(tiny_kimi_dir, doc))


def test_edited_run_prunes_each_image_by_received_attention_and_doubles_it(edited_run, tiny_kimi_dir, mmmu_data_root, monkeypatch):
    monkeypatch.setenv("LMMS_TEXTDOM_DATA", str(mmmu_data_root))
    for task, config in CONFIGS.items():
        logged = samples_of(edited_run, task)
        docs = {doc["id"]: doc for doc in hub_dataset("MMMU/MMMU_Pro", config, "test")}
        assert len(logged) == 3  # --limit 3
        for doc_id, row in logged.items():
            doc = docs[doc_id]
            settings, counts = row["textdom"]["settings"], row["textdom"]["stats"]["counts"]
            assert settings["prune_method"] == "received" and settings["prune_ratio"] == 0.75 and settings["nontext_repeat"] == 2
            tokens = image_tokens(tiny_kimi_dir, doc)
            assert settings["nontext_original"] == sum(tokens)
            assert settings["nontext_kept"] == sum(kept_count(n, 0.75) for n in tokens) < sum(tokens)
            assert counts[1] == 2 * settings["nontext_kept"]
            assert row["mdi_late"] is not None
