"""Embedded defaults: for every registered model id, a tiny random-weight checkpoint in the real
layout and fabricated rows of that family's own task, built once under a cache folder.

``lmms-textdom demo``, ``table2`` and ``knockout`` ask this registry (``embedded_setup``) when no
``--pretrained`` is given, so every family can be tried offline. Everything lives in
``<cache>/defaults/<model id>/`` (``checkpoint/`` and ``data/``, the latter a value for
``LMMS_TEXTDOM_DATA``); a folder is built under a temporary name and renamed when complete, and
rebuilt when ``VERSION`` changes. The first rows of each task are the smallest inputs the family's
input builder takes (one-patch and one-pixel images, a one-frame video, the shortest audio, a
one-sample series), so the demo runs its edge cases too.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from lmms_textdom.core.errors import UsageError

#: bump when a builder below changes what it writes: caches of an older version are rebuilt
VERSION = "2"
#: random weights answer until the token budget: a short one keeps the demo quick
SHORT_ANSWERS = "max_new_tokens=16"


@dataclass(frozen=True)
class EmbeddedDefault:
    what: str  # what the checkpoint and the data are, for the banner
    tasks: str  # the task(s) the demo runs
    write_checkpoint: Callable[[Path], str]  # writes into the folder; returns extra model_args, "{folder}" for it
    write_data: Callable[[Path], object]  # writes dataset snapshots under the root
    real: str  # the model_args of a real checkpoint, for the closing hint


@dataclass(frozen=True)
class Setup:
    """One embedded default, built: what the commands pass to lmms-eval."""

    model: str
    pretrained: str
    model_args: str  # beyond pretrained (e.g. GraphGPT's graph_tower)
    data_root: Path
    tasks: str
    gen_kwargs: str
    what: str
    real: str

    @property
    def banner(self) -> str:
        return (
            f"Embedded default of {self.model}: {self.what}, with RANDOM weights (offline).\n"
            "The numbers exercise the whole pipeline; they say nothing about real models.\n"
        )


# ----- checkpoints ---------------------------------------------------------------------------------


def _llava(folder: Path) -> str:
    from lmms_textdom.tiny.llava import save_llava

    save_llava(folder, num_layers=8)
    return ""


def _llava_next(folder: Path) -> str:
    from lmms_textdom.tiny.llava_next import save_llava_next

    save_llava_next(folder, num_layers=8)
    return ""


def _qwen2_5_vl(folder: Path) -> str:
    from lmms_textdom.tiny.qwen2_5_vl import save_qwen2_5_vl

    save_qwen2_5_vl(folder, num_layers=8)
    return ""


def _qwen2_audio(folder: Path) -> str:
    from lmms_textdom.tiny.qwen2_audio import save_qwen2_audio

    save_qwen2_audio(folder, num_layers=8)
    return ""


def _kimi_vl(folder: Path) -> str:
    from lmms_textdom.tiny.kimi_vl import save_kimi_vl

    save_kimi_vl(folder)
    return ""


def _videollama3(folder: Path) -> str:
    from lmms_textdom.tiny.videollama3 import save_videollama3

    save_videollama3(folder, layout="damo", num_layers=8)
    return ""


def _chatts(folder: Path) -> str:
    from lmms_textdom.tiny.chatts import save_chatts

    save_chatts(folder, "0801", num_layers=8)
    return ""


def _graphgpt(folder: Path) -> str:
    from lmms_textdom.tiny.graphgpt import save_graphclip, save_graphgpt

    save_graphgpt(folder, num_layers=8)
    save_graphclip(folder / "clip_gt_arxiv_pub")
    return "graph_tower={folder}/clip_gt_arxiv_pub"


# ----- data ----------------------------------------------------------------------------------------


def _mmmu_pro(root: Path) -> None:
    from lmms_textdom.tiny.mmmu_pro_data import write_mmmu_pro_snapshot

    write_mmmu_pro_snapshot(root, smallest_first=True)


def _mmbench_video(root: Path) -> None:
    from lmms_textdom.tiny.mmbench_video_data import write_mmbench_video_snapshot

    write_mmbench_video_snapshot(root, smallest_first=True)


def _images_and_videos(root: Path) -> None:
    _mmmu_pro(root)
    _mmbench_video(root)


def _iemocap(root: Path) -> None:
    from lmms_textdom.tiny.iemocap_data import write_iemocap_snapshot

    write_iemocap_snapshot(root, smallest_first=True)


def _timeseries(root: Path) -> None:
    from lmms_textdom.tiny.timeseries_data import write_chatts_eval_files, write_timeseries_exam_snapshot

    write_timeseries_exam_snapshot(root, rows=16, smallest_first=True)
    write_chatts_eval_files(root)


def _graphs(root: Path) -> None:
    from lmms_textdom.tiny.graph_data import write_graph_snapshot

    write_graph_snapshot(root)


MMMU = "fabricated MMMU-Pro rows"
DEFAULTS: dict[str, EmbeddedDefault] = {
    "llava_hf_textdom": EmbeddedDefault(
        "a tiny LLaVA-1.5 (8 layers) on " + MMMU, "mmmu_pro_textdom", _llava, _mmmu_pro,
        "pretrained=llava-hf/llava-1.5-7b-hf",
    ),
    "llava_next_textdom": EmbeddedDefault(
        "a tiny LLaVA-NeXT (AnyRes crops, 8 layers) on " + MMMU, "mmmu_pro_textdom", _llava_next, _mmmu_pro,
        "pretrained=llava-hf/llava-v1.6-vicuna-7b-hf",
    ),
    "qwen2_5_vl_textdom": EmbeddedDefault(
        "a tiny Qwen2.5-VL (8 layers) on " + MMMU + " and MMBench-Video questions on synthetic clips",
        "mmmu_pro_textdom,mmbench_video_textdom", _qwen2_5_vl, _images_and_videos,
        "pretrained=Qwen/Qwen2.5-VL-7B-Instruct",
    ),
    "qwen2_audio_textdom": EmbeddedDefault(
        "a tiny Qwen2-Audio (8 layers) on fabricated IEMOCAP rows (synthetic tones)", "iemocap_textdom",
        _qwen2_audio, _iemocap, "pretrained=Qwen/Qwen2-Audio-7B-Instruct",
    ),
    "kimi_vl_textdom": EmbeddedDefault(
        "a tiny Kimi-VL (hub layout: tiktoken vocabulary, MoonViT, MoE) on " + MMMU, "mmmu_pro_textdom",
        _kimi_vl, _mmmu_pro, "pretrained=moonshotai/Kimi-VL-A3B-Instruct",
    ),
    "videollama3_textdom": EmbeddedDefault(
        "a tiny VideoLLaMA3 (DAMO layout, 8 layers) on MMBench-Video questions on synthetic clips",
        "mmbench_video_textdom", _videollama3, _images_and_videos, "pretrained=DAMO-NLP-SG/VideoLLaMA3-7B",
    ),
    "chatts_textdom": EmbeddedDefault(
        "a tiny ChatTS (0801 layout, 8 layers) on fabricated TimeSeriesExam1 rows", "timeseries_reasoning_textdom",
        _chatts, _timeseries, "pretrained=bytedance-research/ChatTS-14B",
    ),
    "graphgpt_textdom": EmbeddedDefault(
        "a tiny GraphGPT (GraphLlama layout, 8 layers, its GraphCLIP-GT tower) on fabricated GraphGPT-eval-instruction graphs",
        "graphgpt_eval_textdom", _graphgpt, _graphs,
        "pretrained=Jiabin99/GraphGPT-7B-mix-all,graph_tower=<folder of clip_gt_arxiv_pub.pkl>",
    ),
}  # fmt: skip


def _built(folder: Path, write: Callable[[Path], object]) -> str:
    """``write(folder)`` once per ``VERSION``: written under a temporary name, then renamed into place."""
    stamp = folder / ".textdom-version"
    if stamp.is_file() and stamp.read_text() == VERSION:
        return (folder / ".textdom-result").read_text()
    partial = folder.with_name(f"{folder.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    import datasets

    datasets.disable_progress_bars()  # the writers' parquet bars would bury the banner
    result = write(partial) or ""
    (partial / ".textdom-result").write_text(str(result))
    (partial / ".textdom-version").write_text(VERSION)
    shutil.rmtree(folder, ignore_errors=True)  # an older version, or one a parallel build finished first
    try:
        partial.rename(folder)
    except OSError:  # another process renamed its copy in between: use that one
        shutil.rmtree(partial, ignore_errors=True)
    return str(result)


def embedded_setup(model: str, cache: Path) -> Setup:
    """Build (or find) the embedded default of ``model`` under ``cache``; UsageError for an unknown model."""
    if model not in DEFAULTS:
        raise UsageError(f"no embedded default for model {model!r}; registered: {', '.join(DEFAULTS)}")
    spec = DEFAULTS[model]
    home = Path(cache).resolve() / "defaults" / model
    checkpoint = home / "checkpoint"
    model_args = _built(checkpoint, spec.write_checkpoint).format(folder=checkpoint)
    _built(home / "data", spec.write_data)
    return Setup(model, str(checkpoint), model_args, home / "data", spec.tasks, SHORT_ANSWERS, spec.what, spec.real)
