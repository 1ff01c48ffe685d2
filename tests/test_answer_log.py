"""A plain run (textdom=false) logs each answer's token ids and how it ended, for exact measuring."""

from __future__ import annotations

import torch
from lmms_eval.api.instance import unwrap_generation_output

from lmms_textdom.core.probe import output_ends
from lmms_textdom.models.base import Request
from lmms_textdom.models.llava.adapter import LlavaHfTextdom
from tests.adapter_runs import run_adapter
from tests.conftest import random_image


def test_output_ends_say_how_each_sequence_ended(tiny_llama):
    _, tok = tiny_llama
    pad, eos = tok.pad_token_id, tok.eos_token_id
    sat, on, the, mat = tok.convert_tokens_to_ids(["Ġsat", "Ġon", "Ġthe", "Ġmat"])
    generated = torch.tensor([[sat, eos, pad, pad], [sat, on, pad, pad], [sat, the, the, mat], [sat, the, mat, on]])
    ends = output_ends(generated, eos, pad, stop_strings=["on"], tokenizer=tok)
    assert ends == [(2, "eos"), (2, "stop_string"), (4, "length"), (4, "stop_string")]


def test_plain_answers_carry_their_ids_and_ending_into_the_log(tiny_llava_dir):
    requests = [
        Request("what is shown ?", [random_image(1)], {}, {"max_new_tokens": 7}),
        Request("answer with the option letter from the given choices", [random_image(2)], {}, {"max_new_tokens": 7}),
    ]
    plain = LlavaHfTextdom(pretrained=str(tiny_llava_dir), device="cpu", textdom=False, batch_size=2)
    outputs = plain._run_batch(requests)
    _, measured = run_adapter(LlavaHfTextdom, tiny_llava_dir, requests, batch_size=2)
    for output, (text, payload) in zip(outputs, measured):
        logged_text, counts = unwrap_generation_output(output)  # what lmms-eval keeps of the answer
        record = counts.to_dict()
        assert logged_text == text
        assert record["output_tokens"] == len(record["output_ids"]) == payload["stats"]["rows"]
        assert record["input_tokens"] == sum(payload["stats"]["counts"])
        assert record["finish_reason"] == ("eos" if record["output_ids"][-1] == plain.tokenizer.eos_token_id else "length")
        assert plain.tokenizer.decode(record["output_ids"], skip_special_tokens=True) == text
