"""``chatts_textdom``: ChatTS-14B checkpoints (bytedance-research/ChatTS-14B, original and 0801 releases).

No remote code: the language model loads into transformers' own ``Qwen2ForCausalLM`` with the
config translated from config.json, and the time-series encoder is ``encoder.TimeSeriesEncoder``
with the checkpoint's ``ts_encoder.*`` weights. Everything that differs between releases (patch
size, padding rule, position embedding, prefix text) is read from ``config.ts``.

Each request's series come from the task's ``doc_to_visual`` (one list of numbers per series), its
question holds one ``<ts><ts/>`` per series. The language model runs on ``inputs_embeds``: text
token embeddings with each series' encoder outputs in place of its two marker tokens, batches
left-padded (positions from the attention mask, so every sample gets 0, 1, 2, ... as alone).
"""

from __future__ import annotations

import copy

import torch
from transformers import AutoTokenizer, Qwen2ForCausalLM

from lmms_textdom.core.errors import UsageError
from lmms_textdom.core.text_parts import with_text_parts
from lmms_textdom.editing.sequence import edit_nontext
from lmms_textdom.models.args import NONTEXT_REPEAT, PRUNE_RATIO
from lmms_textdom.models.base import Prepared, Request, TextdomModel
from lmms_textdom.models.placement import item_positions, series_item
from lmms_textdom.models.chatts.config import ChatTSConfig, read_chatts_config
from lmms_textdom.models.chatts.encoder import load_encoder
from lmms_textdom.models.chatts.inputs import PLACEHOLDER, TIME_SERIES, batch_tensors, lay_out, marker_ids

class ChatTSLanguageModel(Qwen2ForCausalLM):
    """transformers' Qwen2ForCausalLM, told that the checkpoint's ``ts_encoder.*`` keys are read elsewhere."""

    _keys_to_ignore_on_load_unexpected = [r"^ts_encoder\."]


#: how ``nontext_repeat`` replicates: each series' block of encoder outputs, k times in its own slot
REPEAT_MODE = "series_block"


class ChatTSTextdom(TextdomModel):
    MODEL_ID = "chatts_textdom"
    DEFAULT_PRETRAINED = "bytedance-research/ChatTS-14B"
    FAMILY_ARGS = (PRUNE_RATIO, NONTEXT_REPEAT)
    CHECKPOINTS = "ChatTS"
    DEFAULT_TASK = "timeseries_reasoning_textdom"
    CONTEXT_PLACEHOLDERS = (PLACEHOLDER,)
    NOISE_SITES = (("encoder", "series", True),)  # each series' values after ChatTS's scaling

    def check_args(self) -> None:
        if self.args["prune_ratio"] > 0:
            raise UsageError(
                f"{self.MODEL_ID}: prune_ratio is not supported (ChatTS's encoder has no [CLS] or attention to "
                "score its patches by); use prune_ratio=0, and nontext_repeat for the dilution test"
            )
        self.chatts: ChatTSConfig = read_chatts_config(self.args["pretrained"], self.args["revision"])

    def language_model_depth(self) -> int:
        # 0801's model_type "chatts" is remote code: AutoConfig cannot read it, the translation can
        return self.chatts.language_model.num_hidden_layers

    def load(self):
        kwargs = self.from_pretrained_kwargs()
        kwargs.pop("trust_remote_code")  # never needed: the classes are transformers' own
        name = self.args["pretrained"]
        model = ChatTSLanguageModel.from_pretrained(name, config=copy.deepcopy(self.chatts.language_model), **kwargs)
        device = model.get_input_embeddings().weight.device
        self.encoder = load_encoder(self.chatts, name, self.args["revision"], self.dtype, device)
        # the translated config keeps AutoTokenizer from reading config.json (remote-code auto_map, model_type chatts)
        tokenizer = AutoTokenizer.from_pretrained(name, revision=self.args["revision"], config=self.chatts.language_model)
        tokenizer.padding_side = "left"
        return model, tokenizer

    @property
    def tokenizer(self):
        return self.processor

    def settings(self) -> dict:
        return {
            **super().settings(), "ts_release": self.chatts.release, "ts_patch_size": self.chatts.patch_size,
            "nontext_repeat_mode": REPEAT_MODE,
        }  # fmt: skip

    @torch.inference_mode()
    def prepare(self, batch: list[Request]) -> Prepared:
        ts = self.chatts.ts
        max_length = int(ts["max_sequence_length"]) if ts.get("use_position_embedding") else None
        layouts, series = [], []
        for request in batch:
            layout, encoded = lay_out(request.context, request.visuals, self.chatts.release, self.tokenizer, self.chatts.patch_size, max_length)
            layouts.append(layout)
            series += encoded
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids, mask, classes = batch_tensors(layouts, pad_id)
        # the task's text is cut at its placeholders, whose <ts/> the sequence leaves out
        pieces = [r.context.split(PLACEHOLDER) for r in batch]
        classes = with_text_parts(classes, ids, [l.prompt for l in layouts], pieces, self.tokenizer, marker_ids(self.tokenizer)[1:])
        embeds = self.model.get_input_embeddings()(ids.to(self.device))
        ts_class = classes.names.index(TIME_SERIES)
        if series:  # encoder outputs in batch order fill the time-series slots in the same order
            features = torch.cat(self.encoder(series))
            embeds[classes.ids.to(embeds.device) == ts_class] = features.to(embeds.dtype)
        repeat = self.args["nontext_repeat"]
        counts = [l.patch_counts for l in layouts]
        settings = [{"nontext_original": sum(c), "nontext_kept": sum(c), "ts_patch_counts": c} for c in counts]
        inputs = {"inputs_embeds": embeds, "attention_mask": mask}
        if repeat > 1 and series:
            inputs, classes, _ = edit_nontext(
                classes, {ts_class: [n for c in counts for n in c]}, None, 0.0, repeat,
                {"inputs_embeds": (embeds, 0.0), "attention_mask": (mask, 0)},
            )  # fmt: skip
        return Prepared(inputs, classes, settings)

    def map_items(self, batch: list[Request], prepared: Prepared) -> list[list[dict]]:
        """Each series: token i covers values i * patch_size up to the next token's."""
        out = []
        for b, request in enumerate(batch):
            counts = prepared.sample_settings[b]["ts_patch_counts"]
            placed = item_positions(prepared.classes, b, TIME_SERIES, counts) if counts else []
            out.append([series_item(TIME_SERIES, values, self.chatts.patch_size, n, offsets) for values, (n, offsets) in zip(request.visuals, placed)])
        return out
