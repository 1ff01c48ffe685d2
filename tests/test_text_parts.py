"""Sink / template / task text: found in every family's prompt, partitioning the text exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lmms_textdom.core.modality import classify_tokens
from lmms_textdom.core.stats import SampleStats
from lmms_textdom.core.text_parts import PARTS, SINK, TASK, TEMPLATE, token_offsets, with_text_parts
from lmms_textdom.core.views import content_values
from lmms_textdom.models.base import Request
from lmms_textdom.models.chatts.adapter import ChatTSTextdom
from lmms_textdom.models.graphgpt.adapter import GraphGPTTextdom
from lmms_textdom.models.kimi_vl.adapter import KimiVLTextdom
from lmms_textdom.models.llava.adapter import LlavaHfTextdom
from lmms_textdom.models.llava_next.adapter import LlavaNextTextdom
from lmms_textdom.models.qwen2_5_vl.adapter import Qwen25VLTextdom
from lmms_textdom.models.qwen2_audio.adapter import Qwen2AudioTextdom
from lmms_textdom.models.videollama3.adapter import VideoLlama3Textdom
from lmms_textdom.tiny.llava_next import save_llava_next
from tests.conftest import audio_item, random_image

NEW = {"max_new_tokens": 3}
QUESTIONS = ("what is shown in the image ? answer : a b c d", "which option is correct ? the first , the second or the third")


def series(seed: int, length: int = 12) -> list[float]:
    return list(10 + np.random.default_rng(seed).standard_normal(length))


def family_requests(family, tiny_videos):
    """Two requests per family (different lengths, so the batch is left-padded), several non-text items."""
    if family == "qwen2_5_vl":
        visuals = [[random_image(1, 56), str(tiny_videos[0]), random_image(2, 56)], [random_image(3, 56)]]
    elif family == "qwen2_audio":
        visuals = [[audio_item(1, 0.5), audio_item(2, 0.4)], [audio_item(3, 0.3)]]
    elif family == "chatts":
        return [
            Request("compare <ts><ts/> with <ts><ts/> : which option is correct ?", [series(1), series(2, 20)], {}, NEW),
            Request("what is shown in <ts><ts/> ? answer : a b c d", [series(3)], {}, NEW),
        ]
    elif family == "graphgpt":
        from tests.test_graphgpt import link_items, node_items, request_of

        return [
            Request(r.context, r.visuals, r.doc, NEW)
            for r in (request_of(node_items("cora", "std", 1, seed=3)[0]), request_of(link_items(1, seed=5)[0]))
        ]  # fmt: skip
    elif family == "videollama3":
        visuals = [[random_image(1, 40), str(tiny_videos[0])], [random_image(3, 40)]]
    else:
        visuals = [[random_image(s, 40) for s in (1, 2, 3)], [random_image(4, 40)]]
    return [Request(q, v, {}, NEW) for q, v in zip(QUESTIONS, visuals)]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, request):
    def get(family):
        if family == "llava_next":
            return save_llava_next(tmp_path_factory.mktemp("next") / "tiny-llava-next")
        if family == "chatts":
            return request.getfixturevalue("tiny_chatts_dirs")["0801"]
        if family == "graphgpt":
            return request.getfixturevalue("tiny_graphgpt")[0]
        if family == "videollama3":
            from lmms_textdom.tiny.videollama3 import save_videollama3

            return save_videollama3(tmp_path_factory.mktemp("vl3") / "tiny-videollama3", layout="damo")
        name = {"llava": "tiny_llava_dir", "qwen2_5_vl": "tiny_qwen_dir", "qwen2_audio": "tiny_qwen2_audio_dir", "kimi_vl": "tiny_kimi_dir"}
        return request.getfixturevalue(name[family])

    return get


ADAPTERS = {
    "llava": LlavaHfTextdom, "llava_next": LlavaNextTextdom, "qwen2_5_vl": Qwen25VLTextdom,
    "qwen2_audio": Qwen2AudioTextdom, "kimi_vl": KimiVLTextdom, "chatts": ChatTSTextdom,
    "graphgpt": GraphGPTTextdom, "videollama3": VideoLlama3Textdom,
}  # fmt: skip


def assert_partition(classes):
    text = classes.ids == 0
    parts = [classes.subclasses[name].long() for name in classes.subclasses]
    assert torch.equal(sum(parts), text.long()), "every text position in exactly one part"


@pytest.mark.parametrize("family", list(ADAPTERS))
def test_task_text_is_found_and_parts_partition_the_text_mass(family, checkpoints, tiny_videos):
    adapter = ADAPTERS[family](pretrained=str(checkpoints(family)), device="cpu")
    requests = family_requests(family, tiny_videos)
    prepared = adapter.prepare(requests)
    classes, tok = prepared.classes, adapter.tokenizer
    assert set(PARTS) <= set(classes.subclasses)
    assert_partition(classes)
    ids = prepared.inputs.get("input_ids")
    for b, r in enumerate(requests):
        real = (classes.ids[b] != -1).nonzero().flatten()
        assert classes.subclasses[SINK][b].nonzero().flatten().tolist() == [int(real[0])]
        if ids is None:  # embeddings (ChatTS, GraphGPT): the layout's token ids are not in the inputs
            continue
        task = tok.decode(ids[b][classes.subclasses[TASK][b]]).strip()
        pieces = [p.strip() for p in r.context.split("<ts><ts/>")]
        assert task.replace(" ", "") == "".join(pieces).replace(" ", ""), (family, task)
        template = tok.decode(ids[b][classes.subclasses[TEMPLATE][b]])
        assert pieces[0] not in template
    # the probe's sub-class masses add up to the text mass, layer by layer
    for _, payload in adapter._run_batch(requests):
        stats = SampleStats.from_dict(__import__("json").loads(payload)["stats"])
        parts = sum(stats.subclass_mass[name] for name in stats.subclass_mass)
        np.testing.assert_allclose(parts, stats.mass[:, 0], rtol=1e-6, atol=1e-6)
        assert stats.subclass_counts[TASK] > 0 and all(v is not None for v in content_values(stats).values())
        steps = stats.stepwise
        text_col, columns = steps.column("text"), [steps.column(n) for n in stats.subclass_mass]
        np.testing.assert_allclose(steps.mass[..., columns].sum(-1), steps.mass[..., text_col], rtol=1e-6, atol=1e-6)


def test_chatts_value_prefix_stays_its_own_part(checkpoints, tiny_videos):
    adapter = ChatTSTextdom(pretrained=str(checkpoints("chatts")), device="cpu")
    classes = adapter.prepare(family_requests("chatts", tiny_videos)).classes
    prefix = classes.subclasses["ts_value_prefix"]
    assert bool(prefix.any()) and not bool((prefix & classes.subclasses[TASK]).any())


def test_system_prompt_and_interleaved_images_with_the_task_cut_in_pieces(tiny_qwen):
    """A system turn is template; task pieces between images are task; the placeholders are image."""
    model, processor = tiny_qwen
    pieces = ["compare the first image", "with the second image : which option is correct ?"]
    content = [
        {"type": "image"}, {"type": "text", "text": pieces[0]}, {"type": "image"}, {"type": "text", "text": pieces[1]},
    ]  # fmt: skip
    messages = [{"role": "system", "content": "you are a helpful assistant ."}, {"role": "user", "content": content}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    inputs = processor(text=[prompt], images=[random_image(1, 56), random_image(2, 56)], return_tensors="pt")
    image_id = processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    classes = with_text_parts(classify_tokens(inputs["input_ids"], {"image": image_id}), inputs["input_ids"], [prompt], [pieces], processor.tokenizer)
    assert_partition(classes)
    tok = processor.tokenizer
    task = tok.decode(inputs["input_ids"][0][classes.subclasses[TASK][0]])
    template = tok.decode(inputs["input_ids"][0][classes.subclasses[TEMPLATE][0]])
    assert task.replace(" ", "") == "".join(pieces).replace(" ", "")
    assert "helpful assistant" in template and "compare" not in template


def test_task_text_missing_from_the_prompt_gives_no_task_part(tiny_qwen):
    _, processor = tiny_qwen
    prompt = processor.apply_chat_template([{"role": "user", "content": "the cat sat"}], add_generation_prompt=True)
    inputs = processor(text=[prompt], return_tensors="pt")
    classes = with_text_parts(classify_tokens(inputs["input_ids"], {}), inputs["input_ids"], [prompt], ["not there"], processor.tokenizer)
    assert not bool(classes.subclasses[TASK].any())
    assert_partition(classes)


def test_offsets_without_a_fast_tokenizer_come_from_decoding(tiny_qwen):
    """The decoding fallback (tiktoken-based tokenizers) gives the fast tokenizer's own spans."""
    tok = tiny_qwen[1].tokenizer
    text = "<|im_start|>user\nwhat is shown in the image ?<|im_end|>\n"

    class Slow:
        def __call__(self, text, add_special_tokens=True, **kwargs):
            if "return_offsets_mapping" in kwargs:
                raise NotImplementedError
            return tok(text, add_special_tokens=add_special_tokens)

        def decode(self, ids):
            return tok.decode(ids)

    assert token_offsets(Slow(), text) == token_offsets(tok, text)


def test_a_processor_token_the_prompt_lacks_is_template_and_named(tiny_qwen, caplog):
    """Tokens that do not match the prompt's own tokenization stay template; the rest keep their part."""
    _, processor = tiny_qwen
    tok = processor.tokenizer
    question = "which option is correct ? the first"
    prompt = processor.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True)
    ids = tok(prompt, return_tensors="pt")["input_ids"]
    extra = tok.convert_tokens_to_ids("<|vision_end|>")
    ids = torch.cat([ids[:, :2], torch.tensor([[extra]]), ids[:, 2:]], dim=1)  # one token the prompt never had
    with caplog.at_level("WARNING"):
        classes = with_text_parts(classify_tokens(ids, {}), ids, [prompt], [question], tok)
    assert "text parts" in caplog.text
    assert tok.decode(ids[0][classes.subclasses[TASK][0]]).replace(" ", "") == question.replace(" ", "")
    assert bool(classes.subclasses[TEMPLATE][0, 2])
    assert_partition(classes)
