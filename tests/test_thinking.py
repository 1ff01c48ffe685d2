"""Thinking vs answering (issue 29): a thinking model's answer split into its thinking and answer rows.

The rules on their own, then the tiny Qwen-style thinking release (``<think>`` added tokens, the
template opens the thinking) and the tiny Kimi-VL (``◁think▷`` as plain text, written by the model),
each forced through a thinking span by a logits processor: the segments' masses are transformers'
eager attention summed over exactly their rows, and ``measure`` gives the same record from the ids.
"""

from __future__ import annotations

import json
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from transformers import LogitsProcessor, LogitsProcessorList

from lmms_textdom.core.errors import UsageError
from lmms_textdom.core.segments import SegmentRows, Segments, segment_values, split_rows
from lmms_textdom.core.stats import SampleStats
from lmms_textdom.core.views import decay
from lmms_textdom.integration.hook import textdom_metrics
from lmms_textdom.models.base import Request
from lmms_textdom.models.kimi_vl.adapter import KimiVLTextdom
from lmms_textdom.models.qwen2_5_vl.adapter import Qwen25VLTextdom
from lmms_textdom.models.thinking import KNOWN_MARKERS, MarkerFinder, checkpoint_markers, parse_markers
from lmms_textdom.tiny.tokenizer import build_tokenizer
from tests.conftest import random_image
from tests.oracle import eager_row_masses
from tests.test_forced_probe import assert_same_record

QWEN, KIMI = KNOWN_MARKERS

# ----- the rules --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "opening, closing, by_prompt, thinking, answer",
    [
        ((0, 2), (7, 9), False, (2, 7), (9, 20)),  # both markers: between them, then after
        (None, (7, 9), False, (0, 7), (9, 20)),  # closing only: thinking from the first row
        (None, (7, 9), True, (0, 7), (9, 20)),
        ((3, 4), None, False, (4, 20), None),  # never closed: all thinking, truncated
        (None, None, True, (0, 20), None),  # the prompt opened it, nothing closed it
        ((10, 11), (7, 9), False, (0, 7), (9, 20)),  # an opening after the closing opens nothing
        ((0, 1), (1, 2), False, (1, 1), (2, 20)),  # empty thinking: a segment of no rows
    ],
)
def test_rows_split_at_the_markers_which_belong_to_neither(opening, closing, by_prompt, thinking, answer):
    where = split_rows(20, QWEN, opening, closing, by_prompt)
    assert (where.thinking, where.answer, where.truncated) == (thinking, answer, answer is None)


def test_an_answer_without_markers_has_no_segments():
    assert split_rows(20, QWEN, None, None, False) is None


def test_think_markers_are_checked_before_anything_loads(tiny_qwen_thinking_dir):
    assert parse_markers("auto") == "auto" and parse_markers("NONE") is None
    assert parse_markers("<think>:</think>") == QWEN and parse_markers("◁think▷:◁/think▷") == KIMI
    for bad in ("<think>", "a:a", ":b", "a:b:c"):
        with pytest.raises(ValueError):
            parse_markers(bad)
        with pytest.raises(UsageError, match="think_markers.*START:END"):
            Qwen25VLTextdom(pretrained="/nonexistent/checkpoint", think_markers=bad)


def test_auto_markers_come_from_the_tokenizer_then_the_template_then_the_family(tiny_qwen_thinking_dir):
    from transformers import AutoTokenizer

    family = ("[[", "]]")
    assert checkpoint_markers(AutoTokenizer.from_pretrained(tiny_qwen_thinking_dir), family) == QWEN
    named = build_tokenizer(chat_template="{{ messages[0]['content'] }} {% if x %}◁/think▷{% endif %}")
    assert checkpoint_markers(named, family) == KIMI
    assert checkpoint_markers(build_tokenizer(chat_template="{{ messages[0]['content'] }}"), family) == family


@pytest.mark.parametrize("markers", [QWEN, KIMI])
def test_marker_tokens_are_found_in_text_even_when_split_or_merged(markers):
    """Plain-text markers over several tokens (``◁`` is three byte tokens in this vocabulary): the
    segments' tokens decode to exactly the reasoning and the answer."""
    tok = build_tokenizer()
    start, end = markers
    reasoning, answer = "the cat sat on the mat", " answer : a"
    ids = tok.encode(f"{start}{reasoning}{end}{answer}", add_special_tokens=False)
    assert len(tok.encode(start, add_special_tokens=False)) > 1
    where = MarkerFinder(tok, markers).rows(ids)
    assert tok.decode(ids[slice(*where.thinking)]) == reasoning
    assert tok.decode(ids[slice(*where.answer)]) == answer
    truncated = MarkerFinder(tok, markers).rows(tok.encode(f"x {start}{reasoning}", add_special_tokens=False))
    assert truncated.truncated and tok.decode(tok.encode(f"x {start}{reasoning}", add_special_tokens=False)[slice(*truncated.thinking)]) == reasoning


def test_an_opening_marker_at_the_end_of_the_prompt_starts_the_thinking():
    tok = build_tokenizer()
    finder = MarkerFinder(tok, QWEN)
    answer = tok.encode("the cat sat", add_special_tokens=False)
    assert finder.rows(answer, tok.encode("user : what ? assistant :", add_special_tokens=False)) is None
    where = finder.rows(answer, tok.encode("user : what ? assistant : <think>\n", add_special_tokens=False))
    assert where.thinking == (0, len(answer)) and where.truncated


# ----- the tiny thinking models, forced through a thinking span ---------------------------------


class ForceTokens(LogitsProcessor):
    """Greedy generation of exactly ``sequences[b]`` for batch row b (then ``filler``, which generate pads)."""

    def __init__(self, prompt_len: int, sequences: list[list[int]], filler: int):
        self.prompt_len, self.sequences, self.filler = prompt_len, sequences, filler

    def __call__(self, input_ids, scores):
        step = input_ids.shape[1] - self.prompt_len
        forced = torch.full_like(scores, float("-inf"))
        for b, sequence in enumerate(self.sequences):
            forced[b, sequence[step] if step < len(sequence) else self.filler] = 0.0
        return forced


@contextmanager
def forcing(model, forcer):
    """The adapter's own ``generate`` call, with the forcing logits processor added."""
    plain = model.generate
    model.generate = lambda *args, **kwargs: plain(*args, logits_processor=LogitsProcessorList([forcer]), **kwargs)
    try:
        yield
    finally:
        del model.generate


def forced_run(adapter, requests, sequences, eos: int):
    """(stats per sample, ids per sample, eager per-row masses per sample) of one forced batch."""
    prepared = adapter.prepare(requests)
    inputs = adapter._to_device(prepared.inputs)
    forcer = ForceTokens(inputs["input_ids"].shape[1], sequences, eos)
    with forcing(adapter.model, forcer):
        outputs = adapter._run_batch(requests)
    payloads = [json.loads(payload) for _, payload in outputs]
    stats = [SampleStats.from_dict(p["stats"]) for p in payloads]
    lengths = [s.rows for s in stats]
    assert lengths == [min(len(s), requests[0].gen_kwargs["max_new_tokens"]) for s in sequences]
    new_tokens = max(lengths)
    got, rows = eager_row_masses(
        adapter.model, inputs, prepared.classes.ids, len(prepared.classes.names), lengths, new_tokens,
        logits_processor=LogitsProcessorList([forcer]),
    )  # fmt: skip
    answers = [got[b, inputs["input_ids"].shape[1] :][:n].tolist() for b, n in enumerate(lengths)]
    assert answers == [s[:n] for s, n in zip(sequences, lengths)], "the eager copy must have been forced alike"
    return stats, answers, rows, payloads


def assert_part_is_eager_sum(part: SampleStats, rows: np.ndarray, span: tuple[int, int]) -> None:
    expected = rows[span[0] : span[1]].sum(axis=0)
    k = len(part.classes)
    assert part.rows == span[1] - span[0]
    np.testing.assert_allclose(np.column_stack([part.mass, part.generated]), expected[:, : k + 1], atol=1e-5, rtol=0)
    assert int(part.stepwise.rows[part.stepwise.head :].sum()) == part.rows


def assert_measure_gives_the_same(adapter, requests, answers, stats) -> None:
    """The measure route (one teacher-forced pass over the same ids) gives the same record, segments included."""
    payloads = adapter.measure_batch(requests, answers, {}, [{}] * len(answers))
    for payload, expected in zip(payloads, stats):
        got = SampleStats.from_dict(json.loads(payload)["stats"])
        assert_same_record(got, expected)
        assert (got.segments is None) == (expected.segments is None)
        if expected.segments is not None:
            assert got.segments.where == expected.segments.where
            assert_same_record(got.segments.thinking, expected.segments.thinking)
            if expected.segments.answer is not None:
                assert_same_record(got.segments.answer, expected.segments.answer)


@pytest.fixture(scope="module")
def qwen_thinking(tiny_qwen_thinking_dir):
    return Qwen25VLTextdom(pretrained=str(tiny_qwen_thinking_dir), device="cpu")


def test_qwen_style_thinking_segments_are_eager_attention_over_exactly_their_rows(qwen_thinking):
    adapter = qwen_thinking
    tok = adapter.tokenizer
    close, eos = tok.convert_tokens_to_ids("</think>"), tok.eos_token_id
    new = 24
    closed = tok.encode("the cat sat on the mat\n</think>\n\nthe answer is a", add_special_tokens=False) + [eos]
    never = (tok.encode("the image shows a chart , a table or a photo of the cat", add_special_tokens=False) * 3)[:new]
    assert len(closed) < new and close not in never
    requests = [Request("what is shown in the image ?", [random_image(1, 56)], {}, {"max_new_tokens": new}),
                Request("which option is correct ? the first", [random_image(2, 84)], {}, {"max_new_tokens": new})]  # fmt: skip
    stats, answers, rows, payloads = forced_run(adapter, requests, [closed, never], eos)

    # the template ends the prompt with <think>: the thinking starts at the first row, </think>'s row is in neither
    first = stats[0].segments
    at = closed.index(close)
    assert first.markers == QWEN and first.where.thinking == (0, at) and first.where.answer == (at + 1, len(closed))
    assert_part_is_eager_sum(first.thinking, rows[0], first.where.thinking)
    assert_part_is_eager_sum(first.answer, rows[0], first.where.answer)
    assert_part_is_eager_sum(stats[0], rows[0], (0, len(closed)))
    # never closed: all thinking, flagged, no answer segment (None, not zeros)
    second = stats[1].segments
    assert second.truncated and second.answer is None and second.where.thinking == (0, new)
    assert_part_is_eager_sum(second.thinking, rows[1], (0, new))
    values = segment_values(stats[1])
    assert values["truncated"] is True and values["mdi_late_answer"] is None and values["rows_thinking"] == new
    # the sample log's detail: per-segment values and the thinking's slots along the chain with its decay
    detail = textdom_metrics(payloads[0])["textdom"]["segments"]
    assert detail["rows_thinking"] == at and detail["rows_answer"] == len(closed) - at - 1 and detail["truncated"] is False
    assert detail["mdi_late_thinking"] == pytest.approx(segment_values(stats[0])["mdi_late_thinking"], rel=1e-12)
    assert detail["stepwise_thinking"]["decay"]["decay_late"] == decay(first.thinking, "late")
    assert_measure_gives_the_same(adapter, requests, answers, stats)


def test_kimi_thinking_written_as_plain_text_is_split_exactly(tiny_kimi_dir):
    adapter = KimiVLTextdom(pretrained=str(tiny_kimi_dir), device="cpu")
    tok = adapter.tokenizer
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    new = 20

    def ids(text):
        return tok.encode(text, add_special_tokens=False)

    assert [tok.decode([t]) for t in ids("◁think▷")] == ["◁", "think", "▷"]  # as in the real vocabulary
    closed = ids("◁think▷the image shows a cat◁/think▷the answer is a") + [eos]
    open_only = (ids("◁think▷") + ids(" the image shows a cat") * 4)[:new]
    plain = ids("the answer is a") + [eos]
    requests = [Request("what is shown in the image ?", [random_image(1, 56)], {}, {"max_new_tokens": new}),
                Request("which ?", [random_image(2, 84)], {}, {"max_new_tokens": new}),
                Request("answer with the option letter", [random_image(3, 56)], {}, {"max_new_tokens": new})]  # fmt: skip
    stats, answers, rows, _ = forced_run(adapter, requests, [closed, open_only, plain], eos)

    first = stats[0].segments
    assert first.markers == KIMI and first.where.thinking == (3, 3 + len(ids("the image shows a cat")))
    assert first.where.answer == (len(closed) - 1 - len(ids("the answer is a")), len(closed))
    assert tok.decode(closed[slice(*first.where.thinking)]) == "the image shows a cat"
    assert_part_is_eager_sum(first.thinking, rows[0], first.where.thinking)
    assert_part_is_eager_sum(first.answer, rows[0], first.where.answer)
    second = stats[1].segments
    assert second.truncated and second.where.thinking == (3, new)
    assert_part_is_eager_sum(second.thinking, rows[1], (3, new))
    assert stats[2].segments is None and "segments" not in stats[2].to_dict()
    assert all(v is None for v in segment_values(stats[2]).values())
    assert_measure_gives_the_same(adapter, requests, answers, stats)


def test_think_markers_none_records_no_segments_and_explicit_markers_are_used(tiny_kimi_dir):
    off = KimiVLTextdom(pretrained=str(tiny_kimi_dir), device="cpu", think_markers="none")
    assert off.thinking is None and off.segment_rows([[1, 2]], {}) is None
    mine = KimiVLTextdom(pretrained=str(tiny_kimi_dir), device="cpu", think_markers="<think>:</think>")
    assert mine.thinking.markers == QWEN


def test_segments_survive_the_sample_log_round_trip(qwen_thinking):
    tok = qwen_thinking.tokenizer
    answer = tok.encode("the cat\n</think>\n\na", add_special_tokens=False) + [tok.eos_token_id]
    request = [Request("what is shown in the image ?", [random_image(1, 56)], {}, {"max_new_tokens": 16})]
    (payload,) = qwen_thinking.measure_batch(request, [answer], {}, [{}])
    stats = SampleStats.from_dict(json.loads(payload)["stats"])
    again = SampleStats.from_dict(json.loads(json.dumps(stats.to_dict())))
    at = answer.index(tok.convert_tokens_to_ids("</think>"))
    assert again.segments.where == stats.segments.where == SegmentRows(QWEN, len(answer), (0, at), (at + 1, len(answer)))
    assert_same_record(again.segments.thinking, stats.segments.thinking, rtol=1e-6)
    assert_same_record(again.segments.answer, stats.segments.answer, rtol=1e-6)
    with pytest.raises(ValueError, match="rows"):
        Segments(SegmentRows(QWEN, len(answer), (0, 1), (3, len(answer))), stats.segments.thinking, stats.segments.answer)


# ----- the report's trend of the answer's MDI against the thinking length -----------------------


def test_the_trend_is_a_log_log_least_squares_fit_with_a_bootstrap_band():
    from lmms_textdom.report.thinking_views import LengthPoints, power_fit

    rng = np.random.default_rng(0)
    rows = rng.integers(5, 5000, size=40).astype(float)
    mdi = 30 * rows**-0.4 * np.exp(rng.normal(0, 0.1, size=40))
    fit = power_fit(LengthPoints(rows, mdi, 0), 500, np.random.default_rng(1))
    slope, intercept = np.polyfit(np.log10(rows), np.log10(mdi), 1)
    assert fit.slope == pytest.approx(slope, rel=1e-9) and fit.intercept == pytest.approx(intercept, rel=1e-9)
    assert fit.slope_interval[0] < -0.4 < fit.slope_interval[1] and fit.slope_interval[1] - fit.slope_interval[0] < 0.1
    assert np.all(fit.band[0] <= fit.line) and np.all(fit.line <= fit.band[1])
    assert power_fit(LengthPoints(np.array([7.0, 7.0]), np.array([1.0, 2.0]), 0), 100, np.random.default_rng(1)) is None


def test_segments_and_marker_rows_add_up_to_the_record_and_stay_small():
    """On a synthetic 2,048-row, 80-layer record: thinking + answer + the markers' rows = the whole
    answer, per layer and column, and the segments add under 20 KB to the sample line."""
    from dataclasses import replace

    from lmms_textdom.core.metrics import layer_groups
    from lmms_textdom.core.stepwise import StepMasses

    rng = np.random.default_rng(0)
    rows, layers, columns = 2048, 80, ("text", "image", "generated", "task")
    per_row = rng.random((rows, layers, len(columns)))
    per_row[..., 3] *= 0.5 * per_row[..., 0]  # the task's text is a part of the text
    total = per_row.sum(axis=0)
    whole = SampleStats(("text", "image"), (120, 576), total[:, :2], total[:, 2], rows, 28, {"task": 40}, {"task": total[:, 3]},
                        StepMasses.from_rows(per_row, layer_groups(layers), columns))  # fmt: skip
    where = split_rows(rows, QWEN, (0, 1), (1900, 1902))
    stats = replace(whole, segments=Segments.from_rows(whole, per_row, where))
    parts = stats.segments.thinking.mass + stats.segments.answer.mass + per_row[[0, 1900, 1901], :, :2].sum(axis=0)
    np.testing.assert_allclose(parts, whole.mass, rtol=1e-12)
    np.testing.assert_allclose(stats.segments.thinking.subclass_mass["task"], per_row[1:1900, :, 3].sum(axis=0), rtol=1e-12)
    grown = len(json.dumps(stats.to_dict())) - len(json.dumps(whole.to_dict()))
    assert 0 < grown < 20_000
