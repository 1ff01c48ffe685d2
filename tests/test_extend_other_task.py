"""The documented recipe: add MDI/AEI to somebody else's lmms-eval task without copying its code."""

from __future__ import annotations

import json
import os
import textwrap

import pytest

from tests.conftest import random_image
from tests.lmms_runs import results_of, run_cli

THIRD_PARTY_UTILS = '''
from PIL import Image

def doc_to_visual(doc):
    return [Image.open(doc["image"]).convert("RGB")]

def doc_to_text(doc):
    return doc["question"]

def process_results(doc, results):
    return {"exact_match": float(results[0].strip() == doc["answer"])}
'''

THIRD_PARTY_YAML = """
task: tp_qa
dataset_path: json
dataset_kwargs:
  data_files:
    test: data.jsonl
test_split: test
output_type: generate_until
doc_to_visual: !function tp_utils.doc_to_visual
doc_to_text: !function tp_utils.doc_to_text
doc_to_target: answer
process_results: !function tp_utils.process_results
generation_kwargs:
  max_new_tokens: 8
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
"""

# What a user writes: one Python line around the original function, and a YAML that includes the task.
WRAPPER_PY = """
from lmms_textdom.integration.hook import with_textdom
from tp_utils import process_results as original

process_results = with_textdom(original)
"""

WRAPPER_YAML = """
include: ../thirdparty/tp_qa.yaml
task: tp_qa_textdom
process_results: !function tp_textdom.process_results
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
""" + "".join(
    f"  - metric: {m}\n    aggregation: !function lmms_textdom.integration.hook.mean_of_defined\n    higher_is_better: false\n"
    for m in ("mdi_early", "mdi_middle", "mdi_late", "aei_early", "aei_middle", "aei_late")
) + "  - metric: textdom\n    aggregation: !function lmms_textdom.integration.hook.samples_measured\n    higher_is_better: true\n"


def test_wrapped_third_party_task_reports_textdom_metrics(tiny_llava_dir, tmp_path, monkeypatch):
    third, mine = tmp_path / "thirdparty", tmp_path / "wrapped"
    third.mkdir()
    mine.mkdir()
    (third / "tp_utils.py").write_text(THIRD_PARTY_UTILS)
    (third / "tp_qa.yaml").write_text(THIRD_PARTY_YAML)
    rows = []
    for i in range(3):
        random_image(i).save(third / f"img{i}.png")
        rows.append({"question": "what is shown in the image ?", "answer": "cat", "image": str(third / f"img{i}.png")})
    (third / "data.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    (mine / "tp_textdom.py").write_text(textwrap.dedent(WRAPPER_PY))
    (mine / "tp_qa_textdom.yaml").write_text(WRAPPER_YAML)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(third), os.environ.get("PYTHONPATH", "")]))

    out = tmp_path / "out"
    done = run_cli("llava_hf_textdom", f"pretrained={tiny_llava_dir}", "tp_qa_textdom,tp_qa", out, None, "--include_path", str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    results = results_of(out)["results"]
    wrapped, original = results["tp_qa_textdom"], results["tp_qa"]
    assert wrapped["exact_match,none"] == original["exact_match,none"]
    assert wrapped["textdom,none"] == 3
    for metric in ("mdi_early", "mdi_middle", "mdi_late", "aei_early", "aei_middle", "aei_late"):
        assert wrapped[f"{metric},none"] == pytest.approx(wrapped[f"{metric},none"]) and wrapped[f"{metric},none"] > 0
        assert f"{metric},none" not in original
