"""llava_hf_textdom and the MMMU-Pro tasks through the real lmms-eval CLI on a tiny checkpoint."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoProcessor, LlavaForConditionalGeneration

from lmms_textdom.integration.data import hub_dataset
from lmms_textdom.integration.hook import METRIC_NAMES
from lmms_textdom.integration.registry import tasks_dir
from lmms_textdom.tasks.mmmu_pro.utils import doc_to_text, doc_to_visual
from tests.lmms_runs import results_of, run_cli, run_cli_ok, samples_of
from tests.oracle import eager_class_masses, paper_values

TEXTDOM_KEYS = {f"{m},none" for m in (*METRIC_NAMES, "textdom")}
SUBTASKS = ("mmmu_pro_standard_textdom", "mmmu_pro_vision_textdom")


@pytest.fixture(scope="module")
def batched_run(tiny_llava_dir, mmmu_data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("run_b2")
    return run_cli_ok("llava_hf_textdom", f"pretrained={tiny_llava_dir}", "mmmu_pro_textdom", out, mmmu_data_root, "--batch_size", "2")


def test_results_table_has_accuracy_and_the_six_metrics(batched_run):
    results = results_of(batched_run)
    for name in (*SUBTASKS, "mmmu_pro_textdom"):
        cells = results["results"][name]
        assert {"mmmu_acc,none", *TEXTDOM_KEYS} <= set(cells), name
        assert all(isinstance(cells[k], float) for k in (f"{m},none" for m in METRIC_NAMES))
    assert results["results"]["mmmu_pro_textdom"]["textdom,none"] == 12
    assert results["results"]["mmmu_pro_standard_textdom"]["textdom,none"] == 6


def test_group_values_are_the_sample_weighted_means(batched_run):
    results = results_of(batched_run)["results"]
    for metric in METRIC_NAMES:
        key = f"{metric},none"
        expected = np.mean([results[t][key] for t in SUBTASKS])  # equal sizes (6 + 6)
        assert results["mmmu_pro_textdom"][key] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("config,task", [("standard (10 options)", SUBTASKS[0]), ("vision", SUBTASKS[1])])
def test_sample_log_values_equal_eager_attention(batched_run, tiny_llava_dir, mmmu_data_root, monkeypatch, config, task):
    monkeypatch.setenv("LMMS_TEXTDOM_DATA", str(mmmu_data_root))
    docs = hub_dataset("MMMU/MMMU_Pro", config, "test")
    logged = samples_of(batched_run, task)
    model = LlavaForConditionalGeneration.from_pretrained(tiny_llava_dir, dtype=torch.float32)
    processor = AutoProcessor.from_pretrained(tiny_llava_dir)
    prompt = {"standard": "Answer with the option letter from the given choices directly."}
    prompt["vision"] = prompt["standard"] + (
        " The last line of your response should be of the following format: 'Answer: $LETTER' (without quotes)"
        " where LETTER is one of options."
    )
    for doc in docs:
        images = doc_to_visual(doc)
        text = doc_to_text(doc, {"prompt": prompt["vision" if config == "vision" else "standard"]})
        messages = [{"role": "user", "content": [{"type": "image"}] * len(images) + [{"type": "text", "text": text}]}]
        inputs = processor(text=[processor.apply_chat_template(messages, add_generation_prompt=True)], images=images, return_tensors="pt")
        class_ids = (inputs["input_ids"] == model.config.image_token_id).long()
        row = logged[doc["id"]]
        rows = row["textdom"]["stats"]["rows"]
        _, (masses,) = eager_class_masses(model, dict(inputs), class_ids, 2, [rows], max_new_tokens=64)
        expected = paper_values(masses, int((class_ids == 0).sum()), int(class_ids.sum()))
        for key, value in expected.items():
            assert row[key] == pytest.approx(value, rel=1e-5), (doc["id"], key)
        np.testing.assert_allclose(row["textdom"]["stats"]["mass"], masses[:, :2], atol=1e-4)


def test_sample_log_token_counts_are_the_prompt_the_model_saw_and_the_answer(batched_run, tiny_llava_dir, mmmu_data_root, monkeypatch):
    """lmms-eval's standard token_counts: input = the processor's expanded prompt (image tokens as the
    language model sees them, no padding), output = the answer's rows; both written by lmms-eval itself."""
    monkeypatch.setenv("LMMS_TEXTDOM_DATA", str(mmmu_data_root))
    processor = AutoProcessor.from_pretrained(tiny_llava_dir)
    docs = hub_dataset("MMMU/MMMU_Pro", "standard (10 options)", "test")
    logged = samples_of(batched_run, SUBTASKS[0])
    prompt = "Answer with the option letter from the given choices directly."
    for doc in docs:
        images = doc_to_visual(doc)
        messages = [{"role": "user", "content": [{"type": "image"}] * len(images) + [{"type": "text", "text": doc_to_text(doc, {"prompt": prompt})}]}]
        inputs = processor(text=[processor.apply_chat_template(messages, add_generation_prompt=True)], images=images, return_tensors="pt")
        row = logged[doc["id"]]
        stats = row["textdom"]["stats"]
        assert row["token_counts"] == [{"input_tokens": inputs["input_ids"].shape[1], "output_tokens": stats["rows"]}], doc["id"]
        assert sum(stats["counts"]) == inputs["input_ids"].shape[1] and stats["rows"] >= 1


def test_batch_size_one_equals_batch_size_two(batched_run, tiny_llava_dir, mmmu_data_root, tmp_path):
    # also checks that passing --include_path to our own task folder changes nothing
    done = run_cli(
        "llava_hf_textdom", f"pretrained={tiny_llava_dir}", "mmmu_pro_textdom", tmp_path, mmmu_data_root,
        "--batch_size", "1", "--include_path", str(tasks_dir()),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    for task in SUBTASKS:
        single, batched = samples_of(tmp_path, task), samples_of(batched_run, task)
        assert single.keys() == batched.keys()
        for qid in single:
            assert single[qid]["filtered_resps"][0] == batched[qid]["filtered_resps"][0], qid
            for key in METRIC_NAMES:
                assert single[qid][key] == pytest.approx(batched[qid][key], rel=1e-5), (qid, key)


def test_two_processes_give_the_same_aggregates(batched_run, tiny_llava_dir, mmmu_data_root, tmp_path):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    launcher = (torchrun, "--nproc_per_node", "2", "--master_port", "29533", "-m")
    done = run_cli("llava_hf_textdom", f"pretrained={tiny_llava_dir}", "mmmu_pro_textdom", tmp_path, mmmu_data_root, "--batch_size", "2", launcher=launcher)
    assert done.returncode == 0, done.stderr[-3000:]
    two, one = results_of(tmp_path)["results"], results_of(batched_run)["results"]
    for task in (*SUBTASKS, "mmmu_pro_textdom"):
        assert two[task]["mmmu_acc,none"] == one[task]["mmmu_acc,none"]
        assert two[task]["textdom,none"] == one[task]["textdom,none"]
        # each rank pairs different documents in its batches: padding moves float rounding (~1e-9)
        for key in (f"{m},none" for m in METRIC_NAMES):
            assert two[task][key] == pytest.approx(one[task][key], rel=1e-6), (task, key)


@pytest.mark.parametrize(
    "model,model_args",
    [
        ("llava_hf", "pretrained={ckpt},device_map=cpu,dtype=float32"),  # lmms-eval's own LLaVA wrapper
        ("llava_hf_textdom", "pretrained={ckpt},textdom=false"),
    ],
)
def test_without_textdom_the_tasks_report_accuracy_only(tiny_llava_dir, mmmu_data_root, tmp_path, model, model_args):
    done = run_cli(model, model_args.format(ckpt=tiny_llava_dir), "mmmu_pro_standard_textdom", tmp_path, mmmu_data_root)
    assert done.returncode == 0, done.stderr[-3000:]
    cells = results_of(tmp_path)["results"]["mmmu_pro_standard_textdom"]
    assert "mmmu_acc,none" in cells
    assert not TEXTDOM_KEYS & set(cells), "textdom metrics must be absent, not zero"


def test_bad_model_args_fail_loudly(tiny_llava_dir, mmmu_data_root, tmp_path):
    done = run_cli("llava_hf_textdom", f"pretrained={tiny_llava_dir},dtpye=bfloat16", "mmmu_pro_textdom", tmp_path, mmmu_data_root)
    assert done.returncode == 2
    assert "lmms-textdom configuration error" in done.stderr and "unknown model_args dtpye" in done.stderr
    assert "dtype=auto (one of auto, bfloat16, float16, float32)" in done.stderr
    assert not list(tmp_path.glob("**/*_results.json"))


def test_missing_data_names_the_variable_and_layout(tiny_llava_dir, tmp_path):
    done = run_cli("llava_hf_textdom", f"pretrained={tiny_llava_dir}", "mmmu_pro_standard_textdom", tmp_path / "out", tmp_path / "empty")
    assert done.returncode == 2
    assert "LMMS_TEXTDOM_DATA=" in done.stderr and "MMMU/MMMU_Pro does not exist" in done.stderr
    assert "huggingface-cli download MMMU/MMMU_Pro --repo-type dataset" in done.stderr


def test_hub_unreachable_without_local_copy_names_the_variable(tiny_llava_dir, tmp_path):
    done = run_cli("llava_hf_textdom", f"pretrained={tiny_llava_dir}", "mmmu_pro_vision_textdom", tmp_path, None)
    assert done.returncode == 2
    assert "from the hub (MMMU/MMMU_Pro)" in done.stderr and "Set LMMS_TEXTDOM_DATA" in done.stderr


def test_task_list_shows_our_tasks(tmp_path):
    import subprocess

    from lmms_textdom.integration.runner import offline_env

    done = subprocess.run([sys.executable, "-m", "lmms_eval", "--tasks", "list"], env=offline_env(), capture_output=True, text=True, timeout=600)
    listed = done.stdout + done.stderr
    for task in ("mmmu_pro_textdom", *SUBTASKS, "mmmu_pro_standard4_textdom", "mmmu_pro_vision_textdom_cot", "mmbench_video_textdom", "iemocap_textdom"):
        assert f" - {task}\n" in listed, task
