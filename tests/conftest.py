"""Shared builders: tiny real-class models and their inputs, made offline in-process."""

from __future__ import annotations

import os
import tempfile

# CI runs on a clean machine: a hub or datasets cache that earlier runs left here must not let a test pass
# that fails there, so every session gets an empty Hugging Face home (set before anything imports datasets).
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="textdom-hf-home-")
for _key in ("HF_DATASETS_CACHE", "HF_HUB_CACHE", "TRANSFORMERS_CACHE"):
    os.environ.pop(_key, None)

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

from lmms_textdom.tiny import build_llama, build_llava  # noqa: E402
from lmms_textdom.tiny.iemocap_data import synthetic_clip  # noqa: E402


def random_image(seed: int, size: int = 30) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray((rng.random((size, size, 3)) * 255).astype("uint8"))


def llava_prompt(processor, question: str) -> str:
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
    return processor.apply_chat_template(messages, add_generation_prompt=True)


@pytest.fixture(scope="session")
def tiny_llava():
    return build_llava(num_layers=4)


@pytest.fixture(scope="session")
def tiny_llama():
    return build_llama(num_layers=6, num_heads=8, num_kv_heads=2, hidden_size=64)


@pytest.fixture()
def llava_batch(tiny_llava):
    """A left-padded batch of two prompts of different lengths, one image each."""
    model, processor = tiny_llava
    processor.tokenizer.padding_side = "left"
    texts = [
        llava_prompt(processor, "what is shown in the image ?"),
        llava_prompt(processor, "answer with the option letter from the given choices directly . a b c d"),
    ]
    return processor(text=texts, images=[random_image(1), random_image(2)], return_tensors="pt", padding=True)


@pytest.fixture(scope="session")
def tiny_llava_dir(tmp_path_factory):
    """A saved tiny LLaVA checkpoint, loaded by the adapters through from_pretrained."""
    from lmms_textdom.tiny import save_llava

    return save_llava(tmp_path_factory.mktemp("ckpt") / "tiny-llava", num_layers=4)


@pytest.fixture(scope="session")
def mmmu_data_root(tmp_path_factory):
    """A fabricated MMMU-Pro snapshot in the hub layout; use as LMMS_TEXTDOM_DATA."""
    from lmms_textdom.tiny.mmmu_pro_data import write_mmmu_pro_snapshot

    root = tmp_path_factory.mktemp("data")
    write_mmmu_pro_snapshot(root, rows_per_config=6)
    return root


@pytest.fixture(scope="session")
def mmbv_data_root(tmp_path_factory):
    """A fabricated MMBench-Video snapshot (TSV + pickled tiny mp4s) in the hub layout; use as LMMS_TEXTDOM_DATA."""
    from lmms_textdom.tiny.mmbench_video_data import write_mmbench_video_snapshot

    root = tmp_path_factory.mktemp("mmbv")
    write_mmbench_video_snapshot(root)
    return root


@pytest.fixture()
def logged_warnings():
    """Every warning logged through loguru (lmms-eval's logger and ours) while the test runs."""
    from loguru import logger

    seen: list[str] = []
    sink = logger.add(lambda message: seen.append(str(message)), level="WARNING")
    yield seen
    logger.remove(sink)


def audio_item(seed: int, seconds: float, rate: int = 16000) -> dict:
    """One ``doc_to_visual`` audio item, as audio tasks hand it to a model."""
    return {"array": synthetic_clip(seed, seconds, rate), "sampling_rate": rate}


@pytest.fixture(scope="session")
def tiny_qwen2_audio_dir(tmp_path_factory):
    """A saved tiny Qwen2-Audio checkpoint (4 language-model layers), loaded through from_pretrained."""
    from lmms_textdom.tiny.qwen2_audio import save_qwen2_audio

    return save_qwen2_audio(tmp_path_factory.mktemp("ckpt") / "tiny-qwen2-audio", num_layers=4)


@pytest.fixture(scope="session")
def iemocap_data_root(tmp_path_factory):
    """A fabricated IEMOCAP snapshot (5 sessions x 2 utterances) in the hub layout; use as LMMS_TEXTDOM_DATA."""
    from lmms_textdom.tiny.iemocap_data import write_iemocap_snapshot

    folder = write_iemocap_snapshot(tmp_path_factory.mktemp("data"), rows_per_session=2)
    return folder.parents[1]  # the root above Zahra99/IEMOCAP_Audio


@pytest.fixture(scope="session")
def tiny_qwen():
    from lmms_textdom.tiny.qwen2_5_vl import build_qwen2_5_vl

    model, processor = build_qwen2_5_vl()
    processor.tokenizer.padding_side = "left"
    return model, processor


@pytest.fixture(scope="session")
def tiny_qwen_dir(tmp_path_factory):
    """A saved tiny Qwen2.5-VL checkpoint (its processor only loads through our fallback)."""
    from lmms_textdom.tiny.qwen2_5_vl import save_qwen2_5_vl

    return save_qwen2_5_vl(tmp_path_factory.mktemp("ckpt") / "tiny-qwen2.5-vl")


@pytest.fixture(scope="session")
def tiny_qwen_thinking_dir(tmp_path_factory):
    """A saved tiny Qwen2.5-VL thinking release: ``<think>``/``</think>`` added tokens, a template that opens the thinking."""
    from lmms_textdom.tiny.qwen2_5_vl import save_qwen2_5_vl

    return save_qwen2_5_vl(tmp_path_factory.mktemp("ckpt") / "tiny-qwen2.5-vl-thinking", thinking=True)


@pytest.fixture(scope="session")
def tiny_videos(tmp_path_factory):
    """Two MPEG-4 files written offline: 24 frames at 8 fps (3 s) and 37 frames at 10 fps (3.7 s)."""
    from lmms_textdom.tiny.videos import write_video

    folder = tmp_path_factory.mktemp("videos")
    return write_video(folder / "short.mp4", 24, (56, 84), 8), write_video(folder / "odd.mp4", 37, (56, 56), 10)


#: clips whose first frame is not at 0: (frames, fps, first frame's pts in frames, B-frames)
LATE_START_CLIPS = {
    "24fps_from_0.583s": (72, 24, 14, 0),
    "25fps_from_0.48s": (75, 25, 12, 0),
    "24fps_from_0.583s_b_frames": (72, 24, 14, 2),
}


@pytest.fixture(scope="session")
def late_start_videos(tmp_path_factory):
    """MPEG-4 files (56 x 84) whose first frame is at 0.583 s or 0.48 s, as in many real files, by name."""
    from lmms_textdom.tiny.videos import write_video

    folder = tmp_path_factory.mktemp("late_videos")
    return {
        name: write_video(folder / f"{name}.mp4", frames, (56, 84), fps, start_frame=start, b_frames=b)
        for name, (frames, fps, start, b) in LATE_START_CLIPS.items()
    }


@pytest.fixture(scope="session")
def qwen_requests(tiny_videos):
    """An image, a video, and an image with a video: three lmms-eval requests of 6 new tokens each."""
    from lmms_textdom.models.base import Request

    new = {"max_new_tokens": 6}
    return [
        Request("what is shown in the image ?", [random_image(1, 112)], {}, new),
        Request("describe the video", [str(tiny_videos[0])], {}, new),
        Request("which option is correct ? the first", [random_image(2, 56), str(tiny_videos[1])], {}, new),
    ]


@pytest.fixture(scope="session")
def tiny_kimi_dir(tmp_path_factory):
    """A tiny Kimi-VL checkpoint in the hub's own layout (kimi_vl config, remote-code keys, tiktoken vocabulary)."""
    from lmms_textdom.tiny.kimi_vl import save_kimi_vl

    return save_kimi_vl(tmp_path_factory.mktemp("ckpt") / "tiny-kimi-vl")


@pytest.fixture(scope="session")
def tiny_chatts_dirs(tmp_path_factory):
    """Tiny ChatTS checkpoints of both releases in the real layout: {"original": folder, "0801": folder}."""
    from lmms_textdom.tiny.chatts import RELEASES, save_chatts

    root = tmp_path_factory.mktemp("ckpt")
    return {release: save_chatts(root / f"tiny-chatts-{release}", release) for release in RELEASES}


@pytest.fixture(scope="session")
def timeseries_data_root(tmp_path_factory):
    """Fabricated TimeSeriesExam1 snapshot (8 rows, 6 single-series) and ChatTS eval files; use as LMMS_TEXTDOM_DATA."""
    from lmms_textdom.tiny.timeseries_data import write_chatts_eval_files, write_timeseries_exam_snapshot

    root = tmp_path_factory.mktemp("tsdata")
    write_timeseries_exam_snapshot(root, rows=8)
    write_chatts_eval_files(root)
    return root


@pytest.fixture(scope="session")
def tiny_graphgpt(tmp_path_factory):
    """A tiny GraphGPT checkpoint folder (GraphLlama layout, .bin shards) and a GraphCLIP-GT folder with the same tower."""
    from lmms_textdom.tiny.graphgpt import save_graphclip, save_graphgpt

    root = tmp_path_factory.mktemp("graphgpt")
    return save_graphgpt(root / "GraphGPT-tiny", tower_seed=1), save_graphclip(root / "clip_gt_arxiv_pub", seed=1)


@pytest.fixture(scope="session")
def graph_data_root(tmp_path_factory):
    """Fabricated GraphGPT-eval-instruction files and converted node features; use as LMMS_TEXTDOM_DATA."""
    from lmms_textdom.tiny.graph_data import write_graph_snapshot

    return write_graph_snapshot(tmp_path_factory.mktemp("graphdata"))
