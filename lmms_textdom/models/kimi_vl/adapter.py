"""``kimi_vl_textdom``: Kimi-VL-A3B (Instruct / Thinking) on transformers' native ``kimi_k25`` classes.

The hub checkpoint (remote code for transformers 4.4x) is loaded into
``Kimi_K25ForConditionalGeneration`` through a translated config and key mapping
(``lmms_textdom.models.kimi_vl.checkpoint``); images are preprocessed by Kimi-VL's own rules in PIL
and numpy, the tokenizer is built from the checkpoint's ``tiktoken.model``. Each image's expanded
``<|media_pad|>`` positions are the ``image`` class. With ``prune_ratio`` or ``nontext_repeat`` the
adapter builds the language model's input embeddings itself: each image's merged tokens pruned by
the attention they receive in MoonViT's last block (it has no [CLS]) and/or replicated; positions
stay contiguous (the language model's rotary positions are 1-D).
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
from PIL import Image

from lmms_textdom.core.errors import UsageError
from lmms_textdom.core.modality import PositionClasses, classify_tokens
from lmms_textdom.core.text_parts import with_text_parts
from lmms_textdom.editing.received_attention import RasterReceivedScorer
from lmms_textdom.editing.sequence import edit_nontext
from lmms_textdom.models.args import NONTEXT_REPEAT, PRUNE_RATIO
from lmms_textdom.models.base import Prepared, Request, TextdomModel
from lmms_textdom.models.placement import grid_view, image_item, item_positions
from lmms_textdom.models.kimi_vl.checkpoint import load_kimi_vl, native_config, read_kimi_config
from lmms_textdom.models.kimi_vl.images import KimiImageRules
from lmms_textdom.models.kimi_vl.inputs import KimiProcessor
from lmms_textdom.models.kimi_vl.tokenizer import load_kimi_tokenizer

#: the end of an assistant turn; Kimi-VL's chat replies stop there
CHAT_END = "<|im_end|>"


class KimiVLTextdom(TextdomModel):
    MODEL_ID = "kimi_vl_textdom"
    NOISE_SITES = (("model.model.vision_tower", "pixel_values", False),)
    DEFAULT_PRETRAINED = "moonshotai/Kimi-VL-A3B-Instruct"
    FAMILY_ARGS = (PRUNE_RATIO, NONTEXT_REPEAT)
    # DeepseekV3's cache holds the compressed latents; the probe needs keys the finished cache still holds
    NO_COMPILED_DECODING = "its latent attention (MLA) computes each pass's keys from the cache, which the probe cannot read back after a compiled graph"
    PRUNE_METHOD = "received"
    MODEL_TYPE, CHECKPOINTS = "kimi_vl", "Kimi-VL"
    # Kimi-VL-A3B-Thinking writes them as plain text: its tokenizer and chat template do not name them
    FAMILY_THINK_MARKERS = ("◁think▷", "◁/think▷")

    def check_args(self) -> None:
        if self.args["trust_remote_code"]:
            raise UsageError(
                f"{self.MODEL_ID} never runs the checkpoint's remote code (written for transformers 4.4x, it does not "
                "import on 5.x); drop trust_remote_code"
            )
        self.checkpoint_config()

    def checkpoint_config(self) -> dict:
        return read_kimi_config(self.args["pretrained"], self.args["revision"])

    def language_model_depth(self) -> int:
        return native_config(self.checkpoint_config()).get_text_config().num_hidden_layers

    def load(self):
        pretrained, revision = self.args["pretrained"], self.args["revision"]
        rules = KimiImageRules.from_checkpoint(pretrained, revision)
        tokenizer = load_kimi_tokenizer(pretrained, revision)
        kwargs = {k: v for k, v in self.from_pretrained_kwargs().items() if k != "trust_remote_code"}
        model = load_kimi_vl(pretrained, native_config(self.checkpoint_config()), **kwargs)
        end = tokenizer.convert_tokens_to_ids(CHAT_END)
        eos = model.generation_config.eos_token_id
        eos = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
        if end not in eos:  # a checkpoint without generation_config.json would run on past the reply
            model.generation_config.eos_token_id = [*eos, end]
        tower = model.model.vision_tower
        # the last block's output is what gets merged and projected: its attention scores the tokens
        last = tower.layers[-1].attn
        self._scorer = RasterReceivedScorer(tower, last, tower.merge_kernel_size) if self.args["prune_ratio"] > 0 else None
        return model, KimiProcessor(tokenizer, rules)

    def settings(self) -> dict:
        return {**super().settings(), "in_token_limit": self.processor.rules.in_token_limit}

    # ----- inputs --------------------------------------------------------------------------------

    def prepare(self, batch: list[Request]) -> Prepared:
        for request in batch:
            for visual in request.visuals:
                if not isinstance(visual, Image.Image):
                    raise UsageError(f"{self.MODEL_ID} takes PIL images; got a {type(visual).__name__}")
        prompts = [self.processor.prompt(r.context, len(r.visuals)) for r in batch]
        images = [v for r in batch for v in r.visuals]
        inputs = self.processor(prompts, images)
        classes = classify_tokens(inputs["input_ids"], {"image": self.processor.media_pad_id}, inputs["attention_mask"])
        classes = with_text_parts(classes, inputs["input_ids"], prompts, [r.context for r in batch], self.tokenizer)
        # the patch grid each image got after the token-budget downscale and the padding
        per_sample = [{"image_grids": [list(self.processor.rules.grid(v)) for v in r.visuals]} for r in batch]
        if not self.edits_nontext or not images:
            return Prepared(inputs, classes, per_sample)
        prepared = self.edited_inputs(inputs, classes)
        prepared.sample_settings = [{**a, **b} for a, b in zip(per_sample, prepared.sample_settings)]
        return prepared

    def map_items(self, batch: list[Request], prepared: Prepared) -> list[list[dict]]:
        """Each image: its merged-token grid, which also covers the padding added on the bottom and right."""
        rules, out = self.processor.rules, []
        for b, request in enumerate(batch):
            grids = [rules.grid(image) for image in request.visuals]
            merge_h, merge_w = rules.merge_kernel_size
            placed = item_positions(prepared.classes, b, "image", [rows * cols // rules.merge for rows, cols in grids])
            items = []
            for image, (rows, cols), (n, offsets) in zip(request.visuals, grids, placed):
                (width, height), (scaled_w, scaled_h) = rules.resized_size(image), rules.scaled_size(*image.size)
                if rules.pad_input:  # the image sits at the top left of the padded canvas
                    box = (0.0, 0.0, width / scaled_w, height / scaled_h)
                else:  # centre crop
                    box = ((1 - width / scaled_w) / 2, (1 - height / scaled_h) / 2, (1 + width / scaled_w) / 2, (1 + height / scaled_h) / 2)
                items.append(image_item("image", image, [grid_view(0, rows // merge_h, cols // merge_w, box)], n, offsets))
            out.append(items)
        return out

    @torch.inference_mode()
    def image_features(self, inputs: dict) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
        """Projected merged tokens per image, and their received-attention scores when pruning."""
        scorer = self._scorer
        with scorer.recording() if scorer else nullcontext():
            out = self.model.model.get_image_features(
                inputs["pixel_values"].to(self.device, self.dtype), inputs["image_grid_thw"].to(self.device)
            )
        return list(out.pooler_output), list(scorer.scores) if scorer else None

    @torch.inference_mode()
    def edited_inputs(self, inputs: dict, classes: PositionClasses) -> Prepared:
        ids = inputs["input_ids"].to(self.device)
        is_image = ids == self.model.config.image_token_id
        embeds = self.model.get_input_embeddings()(ids.masked_fill(is_image, 0))
        features, scores = self.image_features(inputs)
        embeds[is_image] = torch.cat(features).to(embeds.device, embeds.dtype)
        c = classes.names.index("image")
        edited, classes, counts = edit_nontext(
            classes, {c: [f.shape[0] for f in features]}, {c: scores} if scores else None,
            self.args["prune_ratio"], self.args["nontext_repeat"],
            {"inputs_embeds": (embeds, 0.0), "attention_mask": (inputs["attention_mask"].to(self.device), 0)},
        )  # fmt: skip
        return Prepared(edited, classes, counts)
