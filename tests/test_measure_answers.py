"""The token ids of a logged answer: logged ids, or re-tokenized text with the EOS / length rule."""

from __future__ import annotations

import pytest

from lmms_textdom.measure.answers import from_log, logged_ids, logged_text, retokenize
from lmms_textdom.tiny import build_llava


@pytest.fixture(scope="module")
def tok():
    return build_llava(num_layers=1)[1].tokenizer


def test_a_shorter_text_ends_with_eos_and_the_limit_adds_none(tok):
    text = "the cat sat on the mat"
    ids = tok.encode(text, add_special_tokens=False)
    assert retokenize(text, tok, [7, 9], max_new_tokens=64).ids == [*ids, 7]
    limit = retokenize(text, tok, [7], max_new_tokens=len(ids))
    assert limit.ids == ids and limit.record()["finish_reason"] == "length_assumed"  # reached the limit: no extra row
    assert limit.over_limit is False and retokenize(text, tok, [7], max_new_tokens=len(ids) - 1).over_limit is True
    unknown = retokenize(text, tok, [7], max_new_tokens=None)
    assert unknown.finish_reason == "eos_assumed" and "over_limit" not in unknown.record()  # limit unknown
    empty = retokenize("", tok, [7], max_new_tokens=64)
    assert empty.ids == [7] and empty.record() == {"tokens": 1, "finish_reason": "eos_assumed", "round_trip": True, "over_limit": False}


def test_round_trip_is_recorded(tok):
    assert retokenize("the cat sat", tok, [7], 64).round_trip
    lost = retokenize("the <pad> cat", tok, [7], 64)  # a special token's text does not come back from decode
    assert lost.round_trip is False and lost.record()["round_trip"] is False


def test_logged_ids_and_text_are_read_from_lmms_eval_log_lines():
    ours = {"doc_id": 0, "filtered_resps": "b", "token_counts": [{"output_tokens": 2, "output_ids": [5, 2], "finish_reason": "eos"}]}
    assert logged_ids(ours) == [5, 2] and from_log(ours).record() == {"tokens": 2, "finish_reason": "eos"}
    stock = {"doc_id": 1, "filtered_resps": "b", "resps": ["the answer is b"], "token_counts": [None]}
    assert logged_ids(stock) is None and logged_text(stock) == "the answer is b"
    assert logged_text({"doc_id": 2, "filtered_resps": "c"}) == "c"


def test_the_limit_of_a_run_is_the_tasks_or_the_backends(tmp_path):
    from lmms_textdom.integration.sample_logs import SampleLog

    def log(model, model_args, task_limit, gen_kwargs=None):
        results = {"config": {"model": model, "model_args": model_args, "gen_kwargs": gen_kwargs},
                   "configs": {"t": {"generation_kwargs": {"max_new_tokens": task_limit}}}}  # fmt: skip
        return SampleLog(tmp_path / "x_samples_t.jsonl", "t", tmp_path / "x_results.json", results)

    assert log("llava_hf_textdom", "pretrained=x", 64).max_new_tokens() == 64
    assert log("llava_hf_textdom", "pretrained=x", 64, {"max_new_tokens": 16}).max_new_tokens() == 16  # --gen_kwargs
    # lmms-eval's vllm backend generates up to the larger of the task's limit and its own (default 4096)
    assert log("vllm", "model=x", 64).max_new_tokens() == 4096
    assert log("vllm", "model=x,max_new_tokens=12", 12).max_new_tokens() == 12
    assert log("vllm", "model=x,max_new_tokens=12", 64).max_new_tokens() == 64
    assert log("vllm", "model=x", 64).checkpoint == "x"
