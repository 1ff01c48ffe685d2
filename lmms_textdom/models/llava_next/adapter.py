"""``llava_next_textdom``: LLaVA-NeXT (LLaVA-1.6, AnyRes crops) checkpoints in the transformers format.

Unpruned, the model keeps transformers' own layout (unpadded crops with image-newline tokens).
With ``prune_ratio`` it follows FasterVLM's LLaVA-NeXT variant: every crop (the base view first,
then the grid crops in raster order) keeps its own top-T patch tokens by [CLS] attention, with the
same T = N (1 - r) for every crop, and the kept tokens are laid out crop after crop with no
unpadding and no newline tokens (FasterVLM's 'spatial' merge).
"""

from __future__ import annotations

import torch
from transformers import LlavaNextForConditionalGeneration
from transformers.image_processing_utils import get_patch_output_size, select_best_resolution
from transformers.image_utils import ChannelDimension
from transformers.models.llava_next.modeling_llava_next import image_size_to_num_patches, unpad_image

from lmms_textdom.core.errors import UsageError
from lmms_textdom.core.modality import PAD, PositionClasses
from lmms_textdom.models.base import Prepared
from lmms_textdom.models.llava.adapter import LlavaHfTextdom
from lmms_textdom.models.placement import grid_view
from lmms_textdom.editing.pruning import kept_count, top_m_in_order
from lmms_textdom.editing.sequence import left_pad_stack, nontext_spans, splice


class LlavaNextTextdom(LlavaHfTextdom):
    MODEL_ID = "llava_next_textdom"
    DEFAULT_PRETRAINED = "llava-hf/llava-v1.6-vicuna-7b-hf"
    MODEL_TYPE, CHECKPOINTS, MODEL_CLASS = "llava_next", "LLaVA-NeXT", LlavaNextForConditionalGeneration

    def image_views(self, image) -> tuple[list[dict], int]:
        """The base view (the whole image squeezed to a square), then the high-resolution crops: unpruned,
        transformers' unpadded grid with an image-newline token ending each row; pruned, each crop's
        own grid as FasterVLM lays them out (crops on the padded canvas of the best resolution)."""
        config = self.model.config
        crop, side = config.vision_config.image_size, config.vision_config.image_size // config.vision_config.patch_size
        width, height = image.size
        best_h, best_w = select_best_resolution((height, width), config.image_grid_pinpoints)
        rows, cols = best_h // crop, best_w // crop
        views = [grid_view(0, side, side)]
        if self.args["prune_ratio"] == 0:
            grid = unpad_image(torch.empty(1, rows * side, cols * side), (height, width)).shape[1:]
            views.append(grid_view(side * side, grid[0], grid[1], newline=True))
            return views, side * side + grid[0] * (grid[1] + 1)
        scaled_h, scaled_w = get_patch_output_size(torch.empty(1, height, width), (best_h, best_w), ChannelDimension.FIRST)
        left, top = (best_w - scaled_w) // 2, (best_h - scaled_h) // 2
        for i in range(rows):
            for j in range(cols):
                box = ((j * crop - left) / scaled_w, (i * crop - top) / scaled_h, ((j + 1) * crop - left) / scaled_w, ((i + 1) * crop - top) / scaled_h)
                views.append(grid_view((1 + i * cols + j) * side * side, side, side, box))
        return views, (1 + rows * cols) * side * side

    def image_feature_kwargs(self, inputs) -> dict:
        return {"image_sizes": inputs["image_sizes"].to(self.device)}

    def edited_inputs(self, inputs, classes: PositionClasses) -> Prepared:
        if self.args["prune_ratio"] == 0:  # replication only: repeat transformers' own image spans
            return super().edited_inputs(inputs, classes)
        return self.fastervlm_inputs(inputs, classes)

    @torch.inference_mode()
    def crop_features(self, inputs) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per image: projected patch features (crops, N, D) and [CLS] scores (crops, N)."""
        config = self.model.config
        counts = [
            image_size_to_num_patches(image_size=size, grid_pinpoints=config.image_grid_pinpoints, patch_size=config.vision_config.image_size)
            for size in inputs["image_sizes"].tolist()
        ]
        crops = torch.cat([pixels[:n] for pixels, n in zip(inputs["pixel_values"], counts)]).to(self.device, self.dtype)
        with self._cls_capture.recording():
            hidden = self.model.model.vision_tower(crops, output_hidden_states=True).hidden_states[config.vision_feature_layer]
        features = self.model.model.multi_modal_projector(hidden[:, 1:])  # strategy 'default': [CLS] dropped
        return list(features.split(counts)), list(self._cls_capture.scores.split(counts))

    @torch.inference_mode()
    def fastervlm_inputs(self, inputs, classes: PositionClasses) -> Prepared:
        ratio, repeat = self.args["prune_ratio"], self.args["nontext_repeat"]
        image_class = classes.names.index("image")
        features, scores = self.crop_features(inputs)
        embeds = self.model.get_input_embeddings()(inputs["input_ids"].to(self.device))
        spans = [nontext_spans(row) for row in classes.ids]
        if sum(len(sample) for sample in spans) != len(features):
            raise UsageError(f"{self.MODEL_ID}: each image needs its own run of placeholders (a separator between adjacent images)")
        # per image: each crop's own top-T tokens, crop after crop (base view first), and where they were
        # in the crops (crop * N + patch: attention maps place the kept tokens by it)
        kept = [
            torch.cat([c * crops.shape[1] + top_m_in_order(s, kept_count(crops.shape[1], ratio)).cpu() for c, s in enumerate(crop_scores)])
            for crops, crop_scores in zip(features, scores)
        ]
        contents = iter(crops.flatten(0, 1)[index.to(crops.device)] for crops, index in zip(features, kept))
        offsets = iter(kept)
        rows, row_classes, row_items, row_offsets, sample_settings = [], [], [], [], []
        for b, sample_spans in enumerate(spans):
            sample_contents = [next(contents) for _ in sample_spans]
            sample_offsets = [next(offsets) for _ in sample_spans]
            row = splice(embeds[b], sample_spans, sample_contents, repeat)
            row_class = splice(classes.ids[b], sample_spans, [torch.full((len(c),), image_class) for c in sample_contents], repeat)
            text = torch.full_like(classes.ids[b], -1)
            row_item = splice(text, sample_spans, [torch.full((len(o),), j) for j, o in enumerate(sample_offsets)], repeat)
            row_offset = splice(text, sample_spans, sample_offsets, repeat)
            rows.append(row[row_class != PAD])
            row_classes.append(row_class[row_class != PAD])
            row_items.append(row_item[row_class != PAD])
            row_offsets.append(row_offset[row_class != PAD])
            items = [[end - start, len(c)] for (start, end), c in zip(sample_spans, sample_contents)]
            sample_settings.append(
                {"nontext_original": sum(o for o, _ in items), "nontext_kept": sum(k for _, k in items), "nontext_items": items}
            )
        class_ids = left_pad_stack(row_classes, PAD)
        return Prepared(
            {"inputs_embeds": left_pad_stack(rows, 0.0), "attention_mask": (class_ids != PAD).long()},
            PositionClasses(classes.names, class_ids, item_index=left_pad_stack(row_items, -1), item_offset=left_pad_stack(row_offsets, -1)),
            sample_settings,
        )
