"""``<task>_textdom`` on lmms-eval's own tasks, through the real CLI with the tiny LLaVA.

One run holds, each under its plain name and as ``*_textdom``: ``ai2d`` (image multiple choice,
no process_results of its own, a regex filter), ``mme`` (free-form yes/no, its own aggregation),
the ``blink`` group (a tag of 14 subtasks, the group's own ``blink_acc`` aggregation) and
``readall``, a user task whose ``process_results`` reads every element of ``results``. The lmms-eval
tasks read fabricated rows in their real schema from a datasets cache (``HF_DATASETS_CACHE``).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lmms_textdom.integration.hook import METRIC_NAMES
from lmms_textdom.tiny.lmms_eval_data import BLINK_CONFIGS, ai2d_rows, blink_rows, mme_rows, write_lmms_eval_cache
from tests.conftest import random_image
from tests.lmms_runs import results_of, run_cli, samples_of
from tests.oracle import eager_class_masses, paper_values

TEXTDOM = (*METRIC_NAMES, "textdom", "textdom_failed")
BLINK = tuple(BLINK_CONFIGS)
FILTER = {"ai2d": "flexible-extract", **{name: "none" for name in ("mme", "readall", "blink", *BLINK)}}
SAMPLES = {"ai2d": 4, "mme": 4, "readall": 3, "blink": 14, **{name: 1 for name in BLINK}}

READALL_UTILS = '''
from PIL import Image

def doc_to_visual(doc):
    return [Image.open(doc["image"]).convert("RGB")]

def process_results(doc, results):
    # Reads all of results, as a task with several requests per document would.
    return {"exact_match": float(any(r == doc["answer"] for r in results)), "results_seen": list(results)}
'''

READALL_YAML = """
task: readall
dataset_path: json
dataset_kwargs:
  data_files:
    test: data.jsonl
test_split: test
output_type: generate_until
doc_to_visual: !function readall_utils.doc_to_visual
doc_to_text: question
doc_to_target: answer
process_results: !function readall_utils.process_results
generation_kwargs:
  max_new_tokens: 8
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
"""


@pytest.fixture(scope="module")
def user_tasks(tmp_path_factory):
    folder = tmp_path_factory.mktemp("user_tasks")
    (folder / "readall_utils.py").write_text(READALL_UTILS)
    (folder / "readall.yaml").write_text(READALL_YAML)
    rows = []
    for i in range(3):
        random_image(40 + i).save(folder / f"img{i}.png")
        rows.append({"question": "what is shown in the image ?", "answer": "cat", "image": str(folder / f"img{i}.png")})
    (folder / "data.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    return folder


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory):
    return write_lmms_eval_cache(tmp_path_factory.mktemp("hf_datasets"))


@pytest.fixture(scope="module")
def run(tiny_llava_dir, hub_cache, user_tasks, tmp_path_factory):
    out = tmp_path_factory.mktemp("any_task_run")
    tasks = ",".join(f"{name},{name}_textdom" for name in ("ai2d", "mme", "blink", "readall"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_DATASETS_CACHE", str(hub_cache))
        done = run_cli(
            "llava_hf_textdom", f"pretrained={tiny_llava_dir}", tasks, out, None,
            "--include_path", str(user_tasks), "--gen_kwargs", "max_new_tokens=12", "--batch_size", "2",
        )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def cells(results: dict, task: str) -> dict:
    section = results["groups"] if task == "blink" else results["results"]
    return {k.split(",")[0]: v for k, v in section[task].items() if "," in k and "_stderr" not in k}


@pytest.mark.parametrize("task", ["ai2d", "mme", "readall", "blink", *BLINK])
def test_derived_task_keeps_the_scores_and_adds_the_six_values(run, task):
    results = results_of(run)
    plain, derived = cells(results, task), cells(results, f"{task}_textdom")
    assert plain, task
    assert {k: derived[k] for k in plain} == plain  # the task's own metrics, same values
    assert set(derived) - set(plain) == set(TEXTDOM)
    assert derived["textdom"] == SAMPLES[task] and derived["textdom_failed"] == 0
    assert all(isinstance(derived[m], float) and derived[m] > 0 for m in METRIC_NAMES)
    assert not set(TEXTDOM) & set(plain), "a plain task reports no textdom metrics"


@pytest.mark.parametrize("task", ["ai2d", "mme", "readall", *BLINK[:3]])
def test_every_sample_is_scored_as_under_the_plain_name(run, task):
    plain = samples_of(run, task, key=lambda row: row["doc_id"])
    derived = samples_of(run, f"{task}_textdom", key=lambda row: row["doc_id"])
    assert plain.keys() == derived.keys() and len(plain) == SAMPLES[task]
    for doc_id, row in plain.items():
        own = set(row) - {"doc_id", "doc_hash", "target", "input", "filtered_resps", "resps", "token_counts"}
        assert own, task
        text, payload = derived[doc_id]["filtered_resps"]
        assert text == row["filtered_resps"], (task, doc_id)  # same generation, same filter output
        assert json.loads(payload)["format"] == "lmms_textdom/1"
        assert {k: derived[doc_id][k] for k in own} == {k: row[k] for k in own}, (task, doc_id)
        assert all(k not in row for k in TEXTDOM)


def test_group_uses_its_own_aggregation_and_sample_weighted_textdom_means(run):
    results = results_of(run)
    group = cells(results, "blink_textdom")
    subtasks = [cells(results, f"{name}_textdom") for name in BLINK]
    assert group["blink_acc"] == pytest.approx(np.mean([s["blink_acc"] for s in subtasks]))  # BLINK's unweighted mean
    assert group["textdom"] == 14
    for metric in METRIC_NAMES:  # one sample each: the sample-weighted mean is the plain mean
        assert group[metric] == pytest.approx(np.mean([s[metric] for s in subtasks]), rel=1e-12)
    assert set(results["group_subtasks"]["blink_textdom"]) == {f"{name}_textdom" for name in BLINK}


def test_a_task_reading_all_results_gets_exactly_a_stock_models_results(run):
    for task in ("readall", "readall_textdom"):
        for row in samples_of(run, task, key=lambda row: row["doc_id"]).values():
            text = row["filtered_resps"][0] if task.endswith("_textdom") else row["filtered_resps"]
            assert row["results_seen"] == [text.strip()], task  # one response, no payload


def _llava(tiny_llava_dir):
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    return LlavaForConditionalGeneration.from_pretrained(tiny_llava_dir, dtype=torch.float32), AutoProcessor.from_pretrained(tiny_llava_dir)


@pytest.mark.parametrize(
    "task,docs,visual",
    [
        ("ai2d_textdom", ai2d_rows, lambda d: [d["image"]]),
        ("mme_textdom", mme_rows, lambda d: [d["image"]]),
        ("blink_counting_textdom", lambda: blink_rows("Counting"), lambda d: [d["image_1"]]),
    ],
)
def test_the_six_values_equal_eager_attention(run, tiny_llava_dir, task, docs, visual):
    model, processor = _llava(tiny_llava_dir)
    logged = samples_of(run, task, key=lambda row: row["doc_id"])
    for doc_id, doc in enumerate(docs()):
        row = logged[doc_id]
        images = [image.convert("RGB") for image in visual(doc)]
        content = [{"type": "image"}] * len(images) + [{"type": "text", "text": row["input"]}]
        prompt = processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True)
        inputs = processor(text=[prompt], images=images, return_tensors="pt")
        class_ids = (inputs["input_ids"] == model.config.image_token_id).long()
        rows = json.loads(row["filtered_resps"][1])["stats"]["rows"]
        _, (masses,) = eager_class_masses(model, dict(inputs), class_ids, 2, [rows], max_new_tokens=rows)
        expected = paper_values(masses, int((class_ids == 0).sum()), int(class_ids.sum()))
        for key, value in expected.items():
            assert row[key] == pytest.approx(value, rel=1e-5), (task, doc_id, key)


def test_a_loglikelihood_task_cannot_be_measured(tiny_llava_dir, tmp_path):
    done = run_cli("llava_hf_textdom", f"pretrained={tiny_llava_dir}", "worldvqa_mc_ppl_textdom", tmp_path, None)
    assert done.returncode == 2
    assert "lmms-textdom configuration error" in done.stderr
    assert "'worldvqa_mc_ppl' cannot be measured: it is a multiple_choice task" in done.stderr


def test_an_unknown_task_is_named(tmp_path):
    from lmms_eval.tasks import TaskManager

    from lmms_textdom.core.errors import UsageError
    from lmms_textdom.integration import derived_tasks

    derived_tasks.install()
    manager = TaskManager("ERROR", include_path=str(tmp_path), include_defaults=False)
    with pytest.raises(UsageError, match="no lmms-eval task, group or tag is named 'nosuch'"):
        manager.match_tasks(["nosuch_textdom"])
    assert manager.match_tasks(["nosuch"]) == []  # plain unknown names stay lmms-eval's to report


NESTED = {
    "leaf_a.yaml": "task: leaf_a\ntag: leaves\ninclude: _template_yaml\n",
    "leaf_b.yaml": "task: leaf_b\ntag: leaves\ninclude: _template_yaml\n",
    "leaf_d.yaml": "task: leaf_d\ninclude: _template_yaml\n",
    "scored_choice.yaml": "task: scored_choice\ninclude: _template_yaml\noutput_type: multiple_choice\ndoc_to_choice: ['cat', 'dog']\n",
    "outer.yaml": """
group: outer
group_alias: Outer
task:
  - group: inner
    task: [leaves]
    aggregate_metric_list: [{metric: exact_match, weight_by_size: true}]
  - {task: inline_c, dataset_path: json, dataset_kwargs: {data_files: {test: "{folder}/data.jsonl"}}, test_split: test,
     output_type: generate_until, doc_to_text: question, doc_to_target: answer,
     metric_list: [{metric: exact_match, aggregation: mean, higher_is_better: true}]}
  - {task: leaf_d, generation_kwargs: {max_new_tokens: 3}}
aggregate_metric_list: [{metric: exact_match, aggregation: mean, weight_by_size: false}]
""",
    "with_choice.yaml": "group: with_choice\ntask: [leaf_a, scored_choice]\n",
    "_template_yaml": """
dataset_path: json
dataset_kwargs: {data_files: {test: data.jsonl}}
test_split: test
output_type: generate_until
doc_to_text: question
doc_to_target: answer
metric_list: [{metric: exact_match, aggregation: mean, higher_is_better: true}]
""",
}


@pytest.fixture(scope="module")
def nested_manager(tmp_path_factory):
    from lmms_eval.tasks import TaskManager

    from lmms_textdom.integration import derived_tasks

    folder = tmp_path_factory.mktemp("nested")
    for name, text in NESTED.items():
        (folder / name).write_text(text.replace("{folder}", str(folder)))
    (folder / "data.jsonl").write_text('{"question": "a or b ?", "answer": "a"}\n')
    derived_tasks.install()
    return TaskManager("ERROR", include_path=str(folder), include_defaults=False)


def test_nested_groups_tags_and_inline_members_are_derived(nested_manager):
    from lmms_eval.api.group import ConfigurableGroup
    from lmms_eval.tasks import get_task_dict

    from lmms_textdom.integration.derived_tasks import GROUP_METRICS

    loaded = get_task_dict(["outer_textdom"], nested_manager)
    ((outer, members),) = loaded.items()
    assert isinstance(outer, ConfigurableGroup) and outer.group_name == "outer_textdom"
    assert outer.group_alias == "Outer_textdom"
    assert [m["metric"] for m in outer.config["aggregate_metric_list"]] == ["exact_match", *(m["metric"] for m in GROUP_METRICS)]
    names = {(k.group_name if isinstance(k, ConfigurableGroup) else k): v for k, v in members.items()}
    assert set(names) == {"inner_textdom", "inline_c_textdom", "leaf_d_textdom"}
    inner = names["inner_textdom"]
    assert set(inner) == {"leaf_a_textdom", "leaf_b_textdom"}  # the tag, derived member by member
    tasks = [inner["leaf_a_textdom"], inner["leaf_b_textdom"], names["inline_c_textdom"], names["leaf_d_textdom"]]
    for task in tasks:
        assert {"exact_match", "mdi_early", "aei_late", "textdom"} <= set(task.aggregation())
        assert task.config.tag is None
    assert names["leaf_d_textdom"].config.generation_kwargs["max_new_tokens"] == 3  # the inline override kept


def test_a_group_with_a_multiple_choice_member_cannot_be_measured(nested_manager):
    from lmms_eval.tasks import get_task_dict

    from lmms_textdom.core.errors import UsageError

    with pytest.raises(UsageError, match="'scored_choice' cannot be measured: it is a multiple_choice task"):
        get_task_dict(["with_choice_textdom"], nested_manager)
