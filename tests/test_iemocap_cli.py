"""qwen2_audio_textdom on iemocap_textdom through the real lmms-eval CLI, plain (x1) and replicated (x5)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration

from lmms_textdom.integration.hook import METRIC_NAMES
from lmms_textdom.tasks.iemocap.utils import doc_to_visual, load_sessions
from tests.lmms_runs import results_of, run_cli, samples_of
from tests.oracle import eager_class_masses
from tests.oracle import paper_values

TASK = "iemocap_textdom"
NEW_TOKENS = "8"  # the task asks 256 as Qwen2-Audio's eval does; a random tiny model rarely stops early
DOCS = 10


def run(checkpoint, data_root, output, model_args: str = ""):
    done = run_cli(
        "qwen2_audio_textdom", f"pretrained={checkpoint}{model_args}", TASK, output, data_root,
        "--batch_size", "2", "--gen_kwargs", f"max_new_tokens={NEW_TOKENS}",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return output


@pytest.fixture(scope="module")
def plain_run(tiny_qwen2_audio_dir, iemocap_data_root, tmp_path_factory):
    return run(tiny_qwen2_audio_dir, iemocap_data_root, tmp_path_factory.mktemp("iemocap_x1"))


@pytest.fixture(scope="module")
def repeated_run(tiny_qwen2_audio_dir, iemocap_data_root, tmp_path_factory):
    return run(tiny_qwen2_audio_dir, iemocap_data_root, tmp_path_factory.mktemp("iemocap_x5"), ",nontext_repeat=5")


def by_doc(output) -> dict[int, dict]:
    return samples_of(output, TASK, key=lambda row: row["doc_id"])


@pytest.mark.parametrize("which", ["plain_run", "repeated_run"])
def test_results_table_has_accuracies_unmapped_and_textdom(request, which):
    output = request.getfixturevalue(which)
    cells = results_of(output)["results"][TASK]
    for metric in (*METRIC_NAMES, "accuracy", "unweighted_accuracy"):
        assert isinstance(cells[f"{metric},none"], float), metric
    assert cells["textdom,none"] == DOCS
    samples = list(by_doc(output).values())
    assert len(samples) == DOCS
    assert cells["accuracy,none"] == pytest.approx(np.mean([s["accuracy"] for s in samples]))
    assert cells["unmapped,none"] == sum(s["unmapped"] for s in samples)
    recalls = {}
    for label in {s["target"] for s in samples}:
        rows = [s["unweighted_accuracy"] for s in samples if s["target"] == label]
        recalls[label] = np.mean([r["predicted"] == label for r in rows])
    assert cells["unweighted_accuracy,none"] == pytest.approx(np.mean(list(recalls.values())))
    assert {s["target"] for s in samples} == {"ang", "hap", "neu", "sad"}


def test_replication_multiplies_audio_tokens_only(plain_run, repeated_run):
    plain, repeated = by_doc(plain_run), by_doc(repeated_run)
    assert plain.keys() == repeated.keys()
    for doc_id in plain:
        p, r = plain[doc_id]["textdom"], repeated[doc_id]["textdom"]
        text, audio = p["stats"]["counts"]
        assert audio in (15, 25, 35)
        assert r["stats"]["counts"] == [text, 5 * audio], doc_id
        assert (r["settings"]["nontext_repeat"], r["settings"]["nontext_original"]) == (5, audio)
        assert p["settings"]["nontext_repeat"] == 1 and p["settings"]["prompt_format"] == "chat"


def test_sample_log_values_equal_eager_attention(plain_run, tiny_qwen2_audio_dir, iemocap_data_root, monkeypatch):
    monkeypatch.setenv("LMMS_TEXTDOM_DATA", str(iemocap_data_root))
    docs = load_sessions(None)
    logged = by_doc(plain_run)
    model = Qwen2AudioForConditionalGeneration.from_pretrained(tiny_qwen2_audio_dir, dtype=torch.float32)
    processor = AutoProcessor.from_pretrained(tiny_qwen2_audio_dir)
    messages = [{"role": "user", "content": [{"type": "audio", "audio_url": "clip"}, {"type": "text", "text": "Recognize the emotion with keywords in English:"}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    for doc_id, doc in enumerate(docs.select(range(4))):  # all three clip lengths, two padded batches
        (clip,) = doc_to_visual(doc)
        inputs = processor(text=[prompt], audio=[clip["array"]], sampling_rate=16000, return_tensors="pt")
        class_ids = (inputs["input_ids"] == model.config.audio_token_index).long()
        row = logged[doc_id]
        rows = row["textdom"]["stats"]["rows"]
        _, (masses,) = eager_class_masses(model, dict(inputs), class_ids, 2, [rows], max_new_tokens=int(NEW_TOKENS))
        expected = paper_values(masses, int((class_ids == 0).sum()), int(class_ids.sum()))
        for key, value in expected.items():
            assert row[key] == pytest.approx(value, rel=1e-5), (doc_id, key)
        np.testing.assert_allclose(row["textdom"]["stats"]["mass"], masses[:, :2], atol=1e-4)
