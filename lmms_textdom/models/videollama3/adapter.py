"""``videollama3_textdom``: VideoLLaMA3 (2B / 7B, video and ``-Image`` fine-tunes, DAMO or native layout).

Visuals come from lmms-eval as PIL images or video file paths. Videos are sampled as the original
does (``frames``: fps 1, at most ``max_frames``), every visual of a request shares the original's
token budget, and video tokens are compressed by the original's frame-difference rule before the
language model when the checkpoint says so (``inputs``); the position-class map is built from the
compressed prompt. A sample with a video gets VLMEvalKit's message (its system turn, question
first) unless ``video_order=video_first``. Answers stop at the end of the chat turn. With
``prune_ratio`` or ``nontext_repeat`` the adapter forms the language model's input embeddings
itself: each image and each video frame is one non-text item, pruned by the attention its tokens
receive in the tower's last block (after compression) and/or replicated through the shared edit
path. The language model's rotary positions are 1-D, so the edited sequence is simply contiguous.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import torch
from PIL import Image
from transformers import AutoTokenizer

from lmms_textdom.core.errors import UsageError
from lmms_textdom.core.text_parts import with_text_parts
from lmms_textdom.core.modality import PositionClasses, classify_tokens
from lmms_textdom.editing.sequence import edit_nontext
from lmms_textdom.models.args import NONTEXT_REPEAT, PRUNE_RATIO, VIDEO_ORDER, Arg
from lmms_textdom.models.base import Prepared, Request, TextdomModel
from lmms_textdom.models.checkpoint import checkpoint_file
from lmms_textdom.models.layout import content_order
from lmms_textdom.models.placement import grid_view, image_item, item_positions, video_item
from lmms_textdom.models.videollama3.checkpoint import checkpoint_config_dict, load_videollama3, text_config, uses_token_compression
from lmms_textdom.models.videollama3.frames import DEFAULT_FPS, DEFAULT_MAX_FRAMES, sample_clip
from lmms_textdom.models.videollama3.inputs import IMAGE_MERGE, MAX_VISUAL_TOKENS, MEAN, MIN_VISUAL_TOKENS, STD, VIDEO_MERGE, encode_batch
from lmms_textdom.models.videollama3.scoring import LastBlockReceivedAttention


class VideoLlama3Textdom(TextdomModel):
    MODEL_ID = "videollama3_textdom"
    DEFAULT_PRETRAINED = "DAMO-NLP-SG/VideoLLaMA3-7B"
    NOISE_SITES = (("model.model.vision_model", "pixel_values", False),)
    FAMILY_ARGS = (
        PRUNE_RATIO, NONTEXT_REPEAT,
        Arg("fps", DEFAULT_FPS, "video frames per second (FFmpeg's fps filter, round down, as the original)",
            kind=float, check=lambda f: f > 0, requirement="a number > 0"),
        Arg("max_frames", DEFAULT_MAX_FRAMES, "most frames per video; more are thinned uniformly (DAMO: 180, VLMEvalKit: 64)",
            kind=int, check=lambda n: n >= 1, requirement="an integer >= 1"),
        Arg("max_visual_tokens", MAX_VISUAL_TOKENS, "language-model tokens shared by all images and frames of a request",
            kind=int, check=lambda n: n >= MIN_VISUAL_TOKENS, requirement=f"an integer >= {MIN_VISUAL_TOKENS}"),
        Arg("token_compression", None, "drop video tokens that barely change from the previous frame (the original's rule); "
            "default: as the checkpoint says (use_token_compression, true in the official 2B / 7B)", kind=bool),
        replace(VIDEO_ORDER, help="where the text goes in a sample with a video: text_first = VLMEvalKit's message "
                "(system turn 'You are a helpful assistant.', question, then video), video_first = lmms-eval's "
                "videollama3 layout (no system turn, visuals, then question)"),
        Arg("faithful_resize_bug", False, "true = size images as DAMO's processor does, reading a PIL size as (height, width): "
            "each image is resized with its aspect ratio transposed", kind=bool),
    )  # fmt: skip
    PRUNE_METHOD = "received"
    DEFAULT_TASK = "mmbench_video_textdom"  # the paper's VideoLLaMA3 row

    def check_args(self) -> None:
        if self.args["trust_remote_code"]:
            raise UsageError(f"{self.MODEL_ID} loads VideoLLaMA3 into transformers' native classes; trust_remote_code must stay false")
        checkpoint_config_dict(self.args["pretrained"], self.args["revision"])
        if self.args["token_compression"] is None:
            self.args["token_compression"] = uses_token_compression(self.args["pretrained"], self.args["revision"])

    def language_model_depth(self) -> int:
        # DAMO's model_type "videollama3_qwen2" is remote code: AutoConfig cannot read it, the translation can
        return text_config(checkpoint_config_dict(self.args["pretrained"], self.args["revision"])).num_hidden_layers

    def load(self):
        pretrained, revision = self.args["pretrained"], self.args["revision"]
        tokenizer = AutoTokenizer.from_pretrained(pretrained, revision=revision, trust_remote_code=False)
        tokenizer.padding_side = "left"  # decoder-only batching
        kwargs = {k: v for k, v in self.from_pretrained_kwargs().items() if k != "trust_remote_code"}
        model = load_videollama3(pretrained, tokenizer, **kwargs)
        self._normalisation = normalisation(pretrained, revision)
        self._scorer = LastBlockReceivedAttention(model.model.vision_model) if self.args["prune_ratio"] > 0 else None
        return model, tokenizer

    @property
    def tokenizer(self):
        return self.processor  # no processor object: the inputs are built in ``inputs``

    def settings(self) -> dict:
        keys = ("fps", "max_frames", "max_visual_tokens", "token_compression", "video_order", "faithful_resize_bug")
        video = {k: self.args[k] for k in keys}
        return {**super().settings(), **video}

    # ----- inputs --------------------------------------------------------------------------------

    def visuals(self, request: Request) -> list:
        out = []
        for visual in request.visuals:
            if isinstance(visual, Image.Image):
                out.append(visual)
            elif isinstance(visual, (str, Path)):
                out.append(sample_clip(visual, self.args["fps"], self.args["max_frames"]))
            else:
                raise UsageError(f"{self.MODEL_ID} takes PIL images and video file paths; got a {type(visual).__name__}")
        return out

    def prepare(self, batch: list[Request]) -> Prepared:
        mean, std = self._normalisation
        a = self.args
        visuals = [self.visuals(r) for r in batch]
        encoded = encode_batch(
            self.tokenizer, [(r.context, v) for r, v in zip(batch, visuals)], a["max_visual_tokens"], a["token_compression"],
            mean, std, a["video_order"], a["faithful_resize_bug"],
        )  # fmt: skip
        decoded = self.decoded_visuals(visuals, encoded.inputs)
        inputs, config = encoded.inputs, self.model.config
        classes = classify_tokens(
            inputs["input_ids"], {"image": config.image_token_id, "video": config.video_token_id}, inputs["attention_mask"]
        )
        classes = with_text_parts(classes, inputs["input_ids"], encoded.prompts, [r.context for r in batch], self.tokenizer)
        if not self.edits_nontext or not (encoded.image_tokens or encoded.frame_tokens):
            return Prepared(inputs, classes, encoded.per_sample, decoded)
        prepared = self.edited_inputs(inputs, classes, encoded.image_tokens, encoded.frame_tokens)
        prepared.sample_settings = [{**a, **b} for a, b in zip(encoded.per_sample, prepared.sample_settings)]
        prepared.decoded = decoded
        return prepared

    @staticmethod
    def decoded_visuals(visuals: list[list], inputs: dict) -> list[list]:
        """Per sample, (image or clip, patch grid t x h x w, kept tokens per frame or None) in the task's order."""
        grids = {kind: iter(inputs[f"{kind}_grid_thw"].tolist()) for kind in ("image", "video") if f"{kind}_grid_thw" in inputs}
        kept = inputs.get("video_compression_mask")
        used, out = 0, []
        for sample in visuals:
            described = []
            for visual in sample:
                if isinstance(visual, Image.Image):
                    described.append((visual, next(grids["image"]), None))
                    continue
                t, h, w = next(grids["video"])
                per_frame = h * w // VIDEO_MERGE**2
                mask = kept[used : used + t * per_frame].view(t, per_frame)
                used += t * per_frame
                described.append((visual, [t, h, w], [row.nonzero().flatten().tolist() for row in mask]))
            out.append(described)
        return out

    def map_items(self, batch: list[Request], prepared: Prepared) -> list[list[dict]]:
        """Images: their patch grid. Videos: a merged-token grid per frame, at its announced time; a frame's
        tokens dropped by the frame-difference compression, like pruned ones, have no position."""
        out = []
        for b, visuals in enumerate(prepared.decoded):
            images = [v for v in visuals if v[2] is None]
            videos = [v for v in visuals if v[2] is not None]
            placed_images = iter(item_positions(prepared.classes, b, "image", [h * w // IMAGE_MERGE**2 for _, (_, h, w), _ in images]) if images else [])
            frames = [len(k) for _, _, kept in videos for k in kept]  # each frame is one item of the edit path
            placed_frames = iter(item_positions(prepared.classes, b, "video", frames) if videos else [])
            by_kind = {"image": iter(images), "video": iter(videos)}
            kinds = ["video" if v[2] is not None else "image" for v in visuals]
            items = []
            for kind in content_order(kinds, self.args["video_order"]):
                if kind == "text":
                    continue
                visual, (t, h, w), kept = next(by_kind[kind])
                if kind == "image":
                    n, offsets = next(placed_images)
                    items.append(image_item(kind, visual, [grid_view(0, h // IMAGE_MERGE, w // IMAGE_MERGE)], n, offsets))
                    continue
                rows, cols = h // VIDEO_MERGE, w // VIDEO_MERGE
                layout, total = [], 0  # each position's index among the frame-major uncompressed tokens
                for f, frame_kept in enumerate(kept):
                    n, offsets = next(placed_frames)
                    chosen = frame_kept if offsets is None else [frame_kept[o] for o in offsets]
                    layout += [f * rows * cols + k for k in chosen]
                    total += n
                described = [
                    {"start": f * rows * cols, "tokens": rows * cols, "time": visual.timestamps[f], "frame": visual.indices[f]}
                    for f in range(t)
                ]  # fmt: skip
                items.append(video_item(kind, described, visual.frames, total, layout, grid=(rows, cols)))
            out.append(items)
        return out

    @torch.inference_mode()
    def features(self, inputs: dict, kind: str) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        """Merged features of every image (video) in batch order, and their scores when pruning."""
        pixels = "pixel_values" if kind == "image" else "pixel_values_videos"
        encode = self.model.model.get_image_features if kind == "image" else self.model.model.get_video_features
        args = (inputs[pixels].to(self.device, self.dtype), *(inputs[f"{kind}_{k}"].to(self.device) for k in ("grid_thw", "merge_sizes")))
        if self._scorer is None:
            return torch.cat(encode(*args).pooler_output), None
        with self._scorer.recording():
            features = torch.cat(encode(*args).pooler_output)
        return features, self._scorer.scores

    @torch.inference_mode()
    def edited_inputs(self, inputs: dict, classes: PositionClasses, image_tokens: list[int], frame_tokens: list[int]) -> Prepared:
        """Embeddings with the visual features in place, each image and each frame pruned and/or repeated."""
        ids = inputs["input_ids"].to(self.device)
        mask = inputs["attention_mask"].to(self.device)
        embeds = self.model.get_input_embeddings()(ids)
        sizes, scores = {}, {}
        if image_tokens:
            features, image_scores = self.features(inputs, "image")
            embeds[ids == self.model.config.image_token_id] = features.to(embeds.dtype)
            sizes[classes.names.index("image")] = image_tokens
            scores[classes.names.index("image")] = image_scores
        if frame_tokens:
            kept = inputs["video_compression_mask"].to(self.device)
            features, video_scores = self.features(inputs, "video")
            embeds[ids == self.model.config.video_token_id] = features[kept].to(embeds.dtype)
            sizes[classes.names.index("video")] = frame_tokens
            if video_scores is not None:  # the compressed tokens' scores, one piece per frame
                scores[classes.names.index("video")] = list(torch.cat(video_scores)[kept].split(frame_tokens))
        edited, classes, counts = edit_nontext(
            classes, sizes, scores if self._scorer else None, self.args["prune_ratio"], self.args["nontext_repeat"],
            {"inputs_embeds": (embeds, 0.0), "attention_mask": (mask, 0)},
        )  # fmt: skip
        return Prepared(edited, classes, counts)


def normalisation(pretrained: str, revision: str) -> tuple[tuple, tuple]:
    """The checkpoint's image mean/std (``preprocessor_config.json``), else the native processors' 0.5."""
    path = checkpoint_file(pretrained, "preprocessor_config.json", revision, required=False)
    config = json.loads(path.read_text()) if path else {}
    return tuple(config.get("image_mean", MEAN)), tuple(config.get("image_std", STD))
