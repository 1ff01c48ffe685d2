"""One bad sample does not end a run: failed requests are retried alone, recorded, left out of MDI/AEI.

In-process on the real adapter (requests built as lmms-eval builds them; the bad sample is an image
file that holds an HTML error page, as scraped data sometimes does), then through the real CLI in
``test_failures_cli.py``.
"""

from __future__ import annotations

import io
import json

import pytest
from lmms_eval.api.instance import Instance

from lmms_textdom.core.errors import UsageError
from lmms_textdom.integration.hook import (
    FAILED,
    METRIC_NAMES,
    encode_failure,
    encode_payload,
    is_failure,
    samples_failed,
    samples_measured,
    split_response,
    textdom_metrics,
)
from lmms_textdom.models.failures import SETUP_FAILURES, SampleFailed
from lmms_textdom.models.llava.adapter import LlavaHfTextdom
from tests.conftest import random_image
from tests.test_hook import STATS

TASK, SPLIT = "fabricated_task", "test"
NOT_AN_IMAGE = b"<html><body>404 Not Found</body></html>"


def png_bytes(seed: int) -> bytes:
    buffer = io.BytesIO()
    random_image(seed).save(buffer, format="PNG")
    return buffer.getvalue()


def open_image(doc):
    """A task's doc_to_visual: the doc's image file, decoded."""
    from PIL import Image

    return [Image.open(io.BytesIO(doc["image"]))]


def requests_for(adapter, images: list[bytes], **gen_kwargs) -> list[Instance]:
    """lmms-eval's generate_until requests of a task whose docs hold ``images`` (file contents)."""
    docs = [{"image": image, "question": "what is shown in the picture ?"} for image in images]
    adapter.task_dict = {TASK: {SPLIT: docs}}
    gen = {"max_new_tokens": 4, "do_sample": False, **gen_kwargs}
    return [
        Instance("generate_until", (doc["question"], gen, open_image, i, TASK, SPLIT), idx=0, metadata={"task": TASK, "doc_id": i, "repeats": 1})
        for i, doc in enumerate(docs)
    ]


@pytest.fixture(scope="module")
def adapter(tiny_llava_dir):
    return LlavaHfTextdom(pretrained=str(tiny_llava_dir), device="cpu", batch_size=3)


def test_failure_payload_is_left_out_of_the_metrics_and_counted():
    failure = {"task": TASK, "doc_id": 3, "split": SPLIT, "error": "OSError", "message": "bad file"}
    response = ["", encode_failure(failure, {"model": "m"})]
    assert is_failure(response) and not is_failure(["A", encode_payload(STATS, {})]) and not is_failure("A")
    texts, payload = split_response(response)
    values = textdom_metrics(payload)
    assert texts == [""]
    assert all(values[name] is None for name in METRIC_NAMES)
    assert values[FAILED] == 1 and values["textdom"]["failure"] == failure
    measured = textdom_metrics(split_response(["A", encode_payload(STATS, {})])[1])
    assert measured[FAILED] == 0
    assert samples_measured([values["textdom"], measured["textdom"]]) == 1
    assert samples_failed([values[FAILED], measured[FAILED]]) == 1


def test_a_bad_sample_fails_alone_and_its_batch_mates_are_answered(adapter, capsys):
    good = [png_bytes(1), png_bytes(2)]
    outputs = [result.text for result in adapter.generate_until(requests_for(adapter, [good[0], NOT_AN_IMAGE, good[1]]))]
    assert is_failure(outputs[1]) and outputs[1][0] == ""
    failure = json.loads(outputs[1][1])["failure"]
    assert failure == {
        "task": TASK, "doc_id": 1, "split": SPLIT, "error": "UnidentifiedImageError", "message": failure["message"],
    }  # fmt: skip
    assert "cannot identify image file" in failure["message"]
    # The batch was retried one request at a time: the others are answered as they are alone.
    for output, image in zip([outputs[0], outputs[2]], good):
        (alone,) = [result.text for result in adapter.generate_until(requests_for(adapter, [image]))]
        assert output[0] == alone[0]
        assert json.loads(output[1])["stats"] == json.loads(alone[1])["stats"]
    summary = capsys.readouterr().err
    assert "1 of 3 requests failed" in summary and f"{TASK} doc_id 1: UnidentifiedImageError" in summary


def test_stop_names_the_request(tiny_llava_dir):
    stopping = LlavaHfTextdom(pretrained=str(tiny_llava_dir), device="cpu", batch_size=2, on_sample_error="stop")
    with pytest.raises(SampleFailed, match=f"{TASK} doc_id 1: UnidentifiedImageError") as raised:
        stopping.generate_until(requests_for(stopping, [png_bytes(1), NOT_AN_IMAGE]))
    assert "on_sample_error=record" in str(raised.value)


def test_a_broken_setup_stops_the_run(adapter, capsys):
    with pytest.raises(SampleFailed, match=f"the first {SETUP_FAILURES} requests all failed"):
        adapter.generate_until(requests_for(adapter, [NOT_AN_IMAGE] * (SETUP_FAILURES + 2)))
    assert f"{SETUP_FAILURES} of {SETUP_FAILURES + 2} requests failed before the run stopped" in capsys.readouterr().err


def test_configuration_errors_are_not_recorded_per_sample(adapter):
    with pytest.raises(UsageError, match="num_beams=2"):
        adapter.generate_until(requests_for(adapter, [png_bytes(1), png_bytes(2)], num_beams=2))
