"""``qwen2_5_vl_textdom``: Qwen2.5-VL checkpoints (3B/7B/32B/72B layouts), images and videos.

Visuals come from lmms-eval as PIL images or as a video file path (its convention); videos are
sampled with ``lmms_textdom.media.video`` (qwen-vl-utils' rule by default, the frames VLMEvalKit's
video-model route gets) and turned into patches by ``lmms_textdom.models.qwen2_5_vl.inputs``, each
frame at the area qwen-vl-utils gives it. A sample with a video puts its question first (VLMEvalKit's
video-model message) unless ``video_order=video_first``.
With ``prune_ratio`` or ``nontext_repeat`` the adapter builds the language model's input itself:
visual features at their placeholders, each image's (video's) tokens pruned by the attention they
receive in the tower's last full-attention block and/or replicated, and the 3-D rotary positions
of the *full* sequence (the model's own ``get_rope_index``) gathered for the kept or repeated
columns, so kept tokens and the text after them keep the positions they had unpruned.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import torch
from PIL import Image
from transformers import Qwen2_5_VLForConditionalGeneration

from lmms_textdom.core.errors import UsageError
from lmms_textdom.core.modality import PositionClasses, classify_tokens
from lmms_textdom.core.text_parts import with_text_parts
from lmms_textdom.models.args import FPS, NONTEXT_REPEAT, PRUNE_RATIO, VIDEO_ORDER, Arg, frame_sampling_arg
from lmms_textdom.models.base import Prepared, Request, TextdomModel
from lmms_textdom.models.layout import content_order
from lmms_textdom.models.placement import grid_view, image_item, item_positions, video_item
from lmms_textdom.models.qwen2_5_vl.inputs import (
    VIDEO_MAX_PIXELS,
    VIDEO_MIN_PIXELS,
    VIDEO_TOTAL_PIXELS,
    build_inputs,
    frame_pixel_range,
)
from lmms_textdom.models.qwen2_5_vl.processor import IMAGE_TOKEN, VIDEO_TOKEN, load_qwen_processor
from lmms_textdom.editing.received_attention import ReceivedAttentionScorer
from lmms_textdom.editing.sequence import edit_nontext
from lmms_textdom.media.video import DEFAULT_FRAMES, QWEN_FPS_MAX_FRAMES, QWEN_VL_UTILS, SampledVideo, sample_video

MIN_FRAME_PIXELS = 28 * 28  # one merged token


def _pixels(name: str, default: int, meaning: str) -> Arg:
    return Arg(name, default, meaning, kind=int, check=lambda p: p >= MIN_FRAME_PIXELS, requirement=f"an integer >= {MIN_FRAME_PIXELS}")


class Qwen25VLTextdom(TextdomModel):
    MODEL_ID = "qwen2_5_vl_textdom"
    DEFAULT_PRETRAINED = "Qwen/Qwen2.5-VL-7B-Instruct"
    FAMILY_ARGS = (
        PRUNE_RATIO, NONTEXT_REPEAT,
        Arg(
            "max_frames", None, "frames per video (default 8); with fps: the most frames taken "
            "(default 768 under qwen_vl_utils, 8 under vlmevalkit_images)",
            kind=int, check=lambda n: n >= 1, requirement="an integer >= 1",
        ),
        FPS,
        frame_sampling_arg(QWEN_VL_UTILS, "qwen-vl-utils' sampler (both ends, even counts), what VLMEvalKit's video route runs"),
        VIDEO_ORDER,
        _pixels("video_min_pixels", VIDEO_MIN_PIXELS, "smallest frame area a video frame is resized to (pixels)"),
        _pixels("video_max_pixels", VIDEO_MAX_PIXELS, "largest frame area (pixels); 28x28 px = one token per frame pair"),
        _pixels("video_total_pixels", VIDEO_TOTAL_PIXELS, "frame areas of one video together (qwen-vl-utils' total_pixels)"),
    )  # fmt: skip
    PRUNE_METHOD = "received"
    MODEL_TYPE, CHECKPOINTS = "qwen2_5_vl", "Qwen2.5-VL"
    NOISE_SITES = (("model.model.visual", "hidden_states", False),)  # the normalised pixels of every patch
    #: float inputs kept in float32 (time spacing of video positions; bfloat16 would shift them)
    FLOAT32_INPUTS = ("second_per_grid_ts",)

    def check_args(self) -> None:
        if self.args["video_min_pixels"] > self.args["video_max_pixels"]:
            raise UsageError(
                f"{self.MODEL_ID}: video_min_pixels={self.args['video_min_pixels']} exceeds "
                f"video_max_pixels={self.args['video_max_pixels']}"
            )
        config = self.checkpoint_config()
        if self.args["prune_ratio"] > 0 and not getattr(config.vision_config, "fullatt_block_indexes", None):
            raise UsageError(f"{self.MODEL_ID}: prune_ratio needs a vision tower with full-attention blocks")

    def load(self):
        pretrained = self.args["pretrained"]
        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(pretrained, **self.from_pretrained_kwargs())
        processor = load_qwen_processor(pretrained, revision=self.args["revision"], trust_remote_code=self.args["trust_remote_code"])
        processor.tokenizer.padding_side = "left"  # decoder-only batching
        self._scorer = ReceivedAttentionScorer(model.model.visual) if self.args["prune_ratio"] > 0 else None
        return model, processor

    def frame_budget(self) -> int:
        """Frames per video at most: max_frames, else the rule's default (8; 768 for qwen-vl-utils' fps rule)."""
        if self.args["max_frames"] is not None:
            return self.args["max_frames"]
        fps_rule = self.args["fps"] is not None and self.args["frame_sampling"] == QWEN_VL_UTILS
        return QWEN_FPS_MAX_FRAMES if fps_rule else DEFAULT_FRAMES

    def settings(self) -> dict:
        keys = ("fps", "frame_sampling", "video_order", "video_min_pixels", "video_max_pixels", "video_total_pixels")
        fps = self.args["fps"]
        # VLMEvalKit's names of the two MMBench-Video settings: MMBench_Video_8frame, MMBench_Video_1fps
        sampling = f"{self.frame_budget()}frame" if fps is None else f"{fps:g}fps"
        return {**super().settings(), "max_frames": self.frame_budget(), "video_sampling": sampling, **{k: self.args[k] for k in keys}}

    # ----- inputs --------------------------------------------------------------------------------

    def prompt(self, text: str, kinds: list[str]) -> str:
        """Visuals in the task's order and the text, placed by ``content_order`` (``video_order``)."""
        content = [{"type": "text", "text": text} if kind == "text" else {"type": kind} for kind in self.order(kinds)]
        return self.processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True)

    def order(self, kinds: list[str]) -> list[str]:
        return content_order(kinds, self.args["video_order"])

    def video(self, path: str | Path) -> SampledVideo:
        """The frames of one video under this run's sampling settings."""
        return sample_video(path, self.args["max_frames"], self.args["fps"], self.args["frame_sampling"])

    def frame_pixels(self, video: SampledVideo) -> tuple[int, float]:
        """(min, max) area of this video's frames: qwen-vl-utils' budget over its frame count."""
        a = self.args
        return frame_pixel_range(len(video.frames), a["video_min_pixels"], a["video_max_pixels"], a["video_total_pixels"])

    def visual_kinds(self, visuals: list) -> list[str]:
        kinds = []
        for visual in visuals:
            if isinstance(visual, Image.Image):
                kinds.append("image")
            elif isinstance(visual, (str, Path)):
                kinds.append("video")
            else:
                raise UsageError(f"{self.MODEL_ID} takes PIL images and video file paths; got a {type(visual).__name__}")
        return kinds

    def prepare(self, batch: list[Request]) -> Prepared:
        kinds = [self.visual_kinds(r.visuals) for r in batch]
        prompts = [self.prompt(r.context, k) for r, k in zip(batch, kinds)]
        images = [v for r in batch for v in r.visuals if isinstance(v, Image.Image)]
        paths = [v for r, k in zip(batch, kinds) for v, kind in zip(r.visuals, k) if kind == "video"]
        videos = [self.video(path) for path in paths]
        inputs = build_inputs(self.processor, prompts, images, videos, per_video_pixels=[self.frame_pixels(v) for v in videos])
        token_ids = self.processor.tokenizer.convert_tokens_to_ids([IMAGE_TOKEN, VIDEO_TOKEN])
        classes = classify_tokens(inputs["input_ids"], dict(zip(("image", "video"), token_ids)), inputs["attention_mask"])
        classes = with_text_parts(classes, inputs["input_ids"], prompts, [r.context for r in batch], self.tokenizer)
        sampled = iter(videos)
        decoded = self.decoded_visuals(batch, kinds, videos, inputs)
        per_sample = [{"content_order": self.order(k)} for k in kinds]
        for settings, k in zip(per_sample, kinds):
            if "video" in k:
                mine = [next(sampled) for kind in k if kind == "video"]
                # the frames taken, and the rate they stand for in the model's time positions
                settings["video_frames"] = [v.indices for v in mine]
                settings["video_fps"] = [v.sampled_fps for v in mine]
        if not self.edits_nontext or not (images or videos):
            return Prepared(inputs, classes, per_sample, decoded)
        prepared = self.edited_inputs(inputs, classes)
        prepared.sample_settings = [{**a, **b} for a, b in zip(per_sample, prepared.sample_settings)]
        prepared.decoded = decoded
        return prepared

    def decoded_visuals(self, batch: list[Request], kinds: list[list[str]], videos: list[SampledVideo], inputs: dict) -> list[list]:
        """Per sample, (kind, image or sampled video, patch grid t x h x w, seconds per temporal patch) in the task's order."""
        grids = {kind: iter(inputs[f"{kind}_grid_thw"].tolist()) for kind in ("image", "video") if f"{kind}_grid_thw" in inputs}
        seconds = iter(inputs["second_per_grid_ts"].tolist()) if "second_per_grid_ts" in inputs else iter(())
        sampled, out = iter(videos), []
        for request, sample_kinds in zip(batch, kinds):
            out.append([
                (kind, visual if kind == "image" else next(sampled), next(grids[kind]), None if kind == "image" else next(seconds))
                for visual, kind in zip(request.visuals, sample_kinds)
            ])  # fmt: skip
        return out

    def map_items(self, batch: list[Request], prepared: Prepared) -> list[list[dict]]:
        """Images: the merged-token grid over the resized image. Videos: one token grid per temporal patch
        (two frames), at the time the model's positions give it."""
        merge = self.processor.image_processor.merge_size
        out = []
        for b, visuals in enumerate(prepared.decoded):
            order = self.order([kind for kind, *_ in visuals])
            sizes = {kind: [t * h * w // merge**2 for k, _, (t, h, w), _ in visuals if k == kind] for kind in ("image", "video")}
            placed = {kind: iter(item_positions(prepared.classes, b, kind, sizes[kind])) for kind in sizes if sizes[kind]}
            by_kind = {kind: iter([v for v in visuals if v[0] == kind]) for kind in ("image", "video")}
            items = []
            for kind in order:  # the language model's order of the visuals
                if kind == "text":
                    continue
                _, visual, (t, h, w), seconds = next(by_kind[kind])
                n, offsets = next(placed[kind])
                rows, cols = h // merge, w // merge
                if kind == "image":
                    items.append(image_item(kind, visual, [grid_view(0, rows, cols)], n, offsets))
                    continue
                frames = [
                    {"start": j * rows * cols, "tokens": rows * cols, "time": j * seconds, "frame": visual.indices[min(2 * j, len(visual.indices) - 1)]}
                    for j in range(t)
                ]  # fmt: skip
                pictures = [visual.frames[min(2 * j, len(visual.frames) - 1)] for j in range(t)]
                items.append(video_item(kind, frames, pictures, n, offsets, grid=(rows, cols)))
            out.append(items)
        return out

    @torch.inference_mode()
    def visual_features(self, inputs: dict, kind: str) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
        """Merged features per image (video) in the tower's output order, and their scores when pruning."""
        scorer = self._scorer
        pixels, grid = ("pixel_values", "image_grid_thw") if kind == "image" else ("pixel_values_videos", "video_grid_thw")
        encode = self.model.model.get_image_features if kind == "image" else self.model.model.get_video_features
        with scorer.recording() if scorer else nullcontext():
            out = encode(inputs[pixels].to(self.device, self.dtype), inputs[grid].to(self.device))
        return list(out.pooler_output), list(scorer.scores) if scorer else None

    @torch.inference_mode()
    def edited_inputs(self, inputs: dict, classes: PositionClasses) -> Prepared:
        ids = inputs["input_ids"].to(self.device)
        mask = inputs["attention_mask"].to(self.device)
        embeds = self.model.get_input_embeddings()(ids)
        sizes, scores = {}, {}
        for kind, token_id in (("image", self.model.config.image_token_id), ("video", self.model.config.video_token_id)):
            if f"{kind}_grid_thw" not in inputs:
                continue
            features, kind_scores = self.visual_features(inputs, kind)
            embeds[ids == token_id] = torch.cat(features).to(embeds.device, embeds.dtype)
            c = classes.names.index(kind)
            sizes[c], scores[c] = [f.shape[0] for f in features], kind_scores
        # 3-D positions of the full sequence: kept and repeated columns carry their own
        positions, _ = self.model.model.get_rope_index(
            ids, mm_token_type_ids=inputs["mm_token_type_ids"].to(self.device),
            image_grid_thw=inputs.get("image_grid_thw"), video_grid_thw=inputs.get("video_grid_thw"),
            second_per_grid_ts=inputs.get("second_per_grid_ts"), attention_mask=mask,
        )  # fmt: skip
        edited, classes, counts = edit_nontext(
            classes, sizes, scores, self.args["prune_ratio"], self.args["nontext_repeat"],
            {"inputs_embeds": (embeds, 0.0), "attention_mask": (mask, 0), "position_ids": (positions, 0)},
        )  # fmt: skip
        edited["position_ids"] = with_text_row(edited["position_ids"], edited["attention_mask"])
        return Prepared(edited, classes, counts)


def with_text_row(positions: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """(3, batch, seq) rotary positions -> the (4, batch, seq) form ``generate`` builds itself.

    Row 0 counts the real tokens contiguously (0 on padding): the model reads it to build the
    mask, and a jump there would look like two packed sequences.
    """
    text = (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 0)
    return torch.cat([text[None].to(positions), positions])
