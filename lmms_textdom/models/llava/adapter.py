"""``llava_hf_textdom``: LLaVA-1.5 checkpoints in the transformers format (llava-hf/llava-1.5-*-hf).

With ``prune_ratio`` or ``nontext_repeat`` the adapter builds the language model's input itself:
the image features from the model's own ``get_image_features`` are placed at the placeholder
positions of the token embeddings, then each image's span is pruned (top [CLS]-attention tokens,
original order) and/or replicated, and ``generate`` runs on the edited ``inputs_embeds``.
"""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np
import torch
from transformers import LlavaForConditionalGeneration
from transformers.image_transforms import get_resize_output_image_size

from lmms_textdom.core.errors import UsageError
from lmms_textdom.core.modality import PositionClasses, classify_tokens
from lmms_textdom.core.text_parts import with_text_parts
from lmms_textdom.models.args import NONTEXT_REPEAT, PRUNE_RATIO
from lmms_textdom.models.base import Prepared, Request, TextdomModel
from lmms_textdom.models.placement import grid_view, image_item, item_positions
from lmms_textdom.editing.pruning import ClsAttentionCapture, feature_layer_attention
from lmms_textdom.editing.sequence import edit_nontext

# LLaVA-1.5's conversation format, for checkpoints whose processor carries no chat template.
FALLBACK_PROMPT = "USER: {images}{text} ASSISTANT:"
TOWERS_WITH_CLS = ("clip_vision_model",)


class LlavaHfTextdom(TextdomModel):
    MODEL_ID = "llava_hf_textdom"
    DEFAULT_PRETRAINED = "llava-hf/llava-1.5-7b-hf"
    FAMILY_ARGS = (PRUNE_RATIO, NONTEXT_REPEAT)
    PRUNE_METHOD = "cls"
    MODEL_TYPE, CHECKPOINTS, MODEL_CLASS = "llava", "LLaVA-1.5", LlavaForConditionalGeneration
    NOISE_SITES = (("model.model.vision_tower", "pixel_values", False),)

    def check_args(self) -> None:
        config = self.checkpoint_config()
        if self.args["prune_ratio"] > 0:
            tower = config.vision_config.model_type
            if tower not in TOWERS_WITH_CLS or config.vision_feature_select_strategy != "default":
                raise UsageError(
                    f"{self.MODEL_ID}: prune_ratio needs a vision tower with a [CLS] token whose patch tokens feed the "
                    f"projector (CLIP, strategy 'default', as in LLaVA-1.5); {self.args['pretrained']} has {tower!r} "
                    f"with strategy {config.vision_feature_select_strategy!r}"
                )
            if not isinstance(config.vision_feature_layer, int):
                raise UsageError(f"{self.MODEL_ID}: prune_ratio needs a single vision feature layer")

    def load(self):
        pretrained = self.args["pretrained"]
        model = self.MODEL_CLASS.from_pretrained(pretrained, **self.from_pretrained_kwargs())
        processor = self.load_processor()
        self._cls_capture = None
        if self.args["prune_ratio"] > 0:
            attention = feature_layer_attention(model.model.vision_tower, model.config.vision_feature_layer)
            self._cls_capture = ClsAttentionCapture(attention)
        return model, processor

    def prompt(self, text: str, num_images: int) -> str:
        """Images first, then the task's text: the layout LLaVA-1.5 was trained on."""
        if self.processor.chat_template is None:
            return FALLBACK_PROMPT.format(images="<image>\n" * num_images, text=text)
        content = [{"type": "image"}] * num_images + [{"type": "text", "text": text}]
        return self.processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True)

    def prepare(self, batch: list[Request]) -> Prepared:
        texts = [self.prompt(r.context, len(r.visuals)) for r in batch]
        images = [image.convert("RGB") for r in batch for image in r.visuals]
        inputs = self.processor(text=texts, images=images or None, return_tensors="pt", padding=True)
        classes = classify_tokens(inputs["input_ids"], {"image": self.model.config.image_token_id}, inputs["attention_mask"])
        classes = with_text_parts(classes, inputs["input_ids"], texts, [r.context for r in batch], self.tokenizer)
        if not self.edits_nontext or not images:
            return Prepared(dict(inputs), classes)
        return self.edited_inputs(inputs, classes)

    def map_items(self, batch: list[Request], prepared: Prepared) -> list[list[dict]]:
        """Each image: one square grid of patch tokens over the part of the image the processor keeps."""
        out = []
        for b, request in enumerate(batch):
            images = [image.convert("RGB") for image in request.visuals]
            layouts = [self.image_views(image) for image in images]
            placed = item_positions(prepared.classes, b, "image", [tokens for _, tokens in layouts])
            out.append([image_item("image", image, views, n, offsets) for image, (views, _), (n, offsets) in zip(images, layouts, placed)])
        return out

    def image_views(self, image) -> tuple[list[dict], int]:
        """(token grids, tokens) of one image in the language model's layout."""
        vision = self.model.config.vision_config
        side = vision.image_size // vision.patch_size
        return [grid_view(0, side, side, self.crop_box(image))], side * side

    def crop_box(self, image) -> tuple[float, float, float, float]:
        """The centre crop CLIP's processor keeps after resizing the shortest edge, in fractions of the image."""
        processor = self.processor.image_processor
        size, crop = dict(processor.size or {}), dict(processor.crop_size or {})
        if not getattr(processor, "do_center_crop", False) or "height" not in crop:
            return (0.0, 0.0, 1.0, 1.0)
        if "shortest_edge" in size:  # transformers' own size rule (integer sizes), then its integer centre offsets
            height, width = get_resize_output_image_size(np.zeros((image.height, image.width, 1)), size["shortest_edge"], default_to_square=False)
        else:
            height, width = size.get("height", image.height), size.get("width", image.width)
        top, left = (height - crop["height"]) // 2, (width - crop["width"]) // 2
        return (left / width, top / height, (left + crop["width"]) / width, (top + crop["height"]) / height)

    def image_feature_kwargs(self, inputs) -> dict:
        """Extra arguments of the model's ``get_image_features`` (LLaVA-NeXT needs the image sizes)."""
        return {}

    @torch.inference_mode()
    def image_features(self, inputs) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """The features that fill each image's placeholders, and their [CLS] scores when pruning."""
        config = self.model.config
        capture = self._cls_capture
        with capture.recording() if capture else nullcontext():
            out = self.model.get_image_features(
                pixel_values=inputs["pixel_values"].to(self.device, self.dtype),
                vision_feature_layer=config.vision_feature_layer,
                vision_feature_select_strategy=config.vision_feature_select_strategy,
                **self.image_feature_kwargs(inputs),
            )
        features = out.pooler_output if hasattr(out, "pooler_output") else out
        return list(features), capture.scores if capture else None

    @torch.inference_mode()
    def edited_inputs(self, inputs, classes: PositionClasses) -> Prepared:
        ratio = self.args["prune_ratio"]
        ids = inputs["input_ids"].to(self.device)
        features, scores = self.image_features(inputs)
        embeds = self.model.get_input_embeddings()(ids)
        embeds[ids == self.model.config.image_token_id] = torch.cat(features).to(embeds.dtype)
        image = classes.names.index("image")
        edited, classes, counts = edit_nontext(
            classes, {image: [f.shape[0] for f in features]}, {image: scores}, ratio, self.args["nontext_repeat"],
            {"inputs_embeds": (embeds, 0.0), "attention_mask": (inputs["attention_mask"], 0)},
        )  # fmt: skip
        return Prepared(edited, classes, counts)
