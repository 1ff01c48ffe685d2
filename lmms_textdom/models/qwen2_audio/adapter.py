"""``qwen2_audio_textdom``: Qwen2-Audio checkpoints (Qwen/Qwen2-Audio-7B-Instruct, Qwen/Qwen2-Audio-7B).

Audio comes from the task's ``doc_to_visual`` as ``{"array", "sampling_rate"}`` items, resampled to
the feature extractor's 16 kHz; the processor expands each ``<|AUDIO|>`` to one token per encoder
frame (~25 per second, clips cut at 30 s as in Qwen2-Audio's own evaluation). The class "audio"
is read from ``config.audio_token_index``. With ``nontext_repeat`` the adapter builds the language
model's input itself: the audio tower's projected features at the placeholder positions, each
clip's span replicated, and ``generate`` runs on the edited ``inputs_embeds``.
"""

from __future__ import annotations

import torch
from transformers import Qwen2AudioForConditionalGeneration
from transformers.masking_utils import create_bidirectional_mask

from lmms_textdom.media.audio import clip_at_rate
from lmms_textdom.core.errors import UsageError
from lmms_textdom.core.modality import PositionClasses, classify_tokens
from lmms_textdom.core.text_parts import with_text_parts
from lmms_textdom.models.args import NONTEXT_REPEAT, Arg
from lmms_textdom.models.base import Prepared, Request, TextdomModel
from lmms_textdom.models.placement import audio_item, item_positions
from lmms_textdom.editing.sequence import edit_nontext

PROMPT_FORMAT = Arg(
    "prompt_format", "chat",
    "chat = the checkpoint's chat template; raw = <|audio_bos|><|AUDIO|><|audio_eos|> + text, as Qwen2-Audio's "
    "own evaluation prompts the base Qwen2-Audio-7B",
    choices=("chat", "raw"),
)  # fmt: skip


class Qwen2AudioTextdom(TextdomModel):
    MODEL_ID = "qwen2_audio_textdom"
    DEFAULT_PRETRAINED = "Qwen/Qwen2-Audio-7B-Instruct"
    FAMILY_ARGS = (NONTEXT_REPEAT, PROMPT_FORMAT)
    MODEL_TYPE, CHECKPOINTS = "qwen2_audio", "Qwen2-Audio"
    NOISE_SITES = (("model.model.audio_tower", "input_features", True),)  # log-mel features
    DEFAULT_TASK = "iemocap_textdom"

    def load(self):
        model = Qwen2AudioForConditionalGeneration.from_pretrained(self.args["pretrained"], **self.from_pretrained_kwargs())
        return model, self.load_processor()

    def settings(self) -> dict:
        rate = self.processor.feature_extractor.sampling_rate
        return {**super().settings(), "prompt_format": self.args["prompt_format"], "sampling_rate": rate}

    def prompt(self, text: str, num_audios: int) -> str:
        """Clips first, then the task's text, in the chat template or as Qwen2-Audio's raw eval prompt."""
        if self.args["prompt_format"] == "raw":
            clip = self.processor.audio_bos_token + self.processor.audio_token + self.processor.audio_eos_token
            return clip * num_audios + text
        # Qwen2-Audio's own template spots audio items by an "audio_url" key; the clips go in separately.
        content = [{"type": "audio", "audio_url": "clip"}] * num_audios + [{"type": "text", "text": text}]
        prompt = self.processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True)
        if prompt.count(self.processor.audio_token) != num_audios:
            raise UsageError(
                f"{self.MODEL_ID}: the checkpoint's chat template wrote {prompt.count(self.processor.audio_token)} "
                f"{self.processor.audio_token} placeholders for {num_audios} clips; pass prompt_format=raw"
            )
        return prompt

    def prepare(self, batch: list[Request]) -> Prepared:
        rate = self.processor.feature_extractor.sampling_rate
        clips = [clip_at_rate(visual, rate) for r in batch for visual in r.visuals]
        texts = [self.prompt(r.context, len(r.visuals)) for r in batch]
        inputs = self.processor(text=texts, audio=clips or None, sampling_rate=rate, return_tensors="pt", padding=True)
        classes = classify_tokens(inputs["input_ids"], {"audio": self.model.config.audio_token_index}, inputs["attention_mask"])
        classes = with_text_parts(classes, inputs["input_ids"], texts, [r.context for r in batch], self.tokenizer)
        per_sample = self.clip_settings(batch, clips, inputs)
        decoded, used = [], 0
        for request in batch:  # the clips at the extractor's rate, for the attention maps' waveform
            decoded.append(clips[used : used + len(request.visuals)])
            used += len(request.visuals)
        # transformers' forward takes a prompt without two adjacent <|AUDIO|> as not yet expanded and
        # fails on it: a batch of one-token clips goes through the features path below instead
        one_token_clips = bool(clips) and max(max(s["audio_tokens"], default=0) for s in per_sample) < 2
        if not (self.edits_nontext or one_token_clips) or not clips:
            return Prepared(dict(inputs), classes, per_sample, decoded)
        prepared = self.edited_inputs(inputs, classes)
        prepared.sample_settings = [{**a, **b} for a, b in zip(per_sample, prepared.sample_settings)]
        prepared.decoded = decoded
        return prepared

    def map_items(self, batch: list[Request], prepared: Prepared) -> list[list[dict]]:
        """Each clip: its tokens in time order, each covering the clip's encoded seconds / tokens."""
        extractor, out = self.processor.feature_extractor, []
        for b, clips in enumerate(prepared.decoded):
            settings = prepared.sample_settings[b]
            tokens, seconds = settings.get("audio_tokens", []), settings.get("audio_seconds", [])
            placed = item_positions(prepared.classes, b, "audio", tokens) if clips else []
            out.append([
                audio_item("audio", clip[: extractor.n_samples], s, t, n, offsets)
                for clip, s, t, (n, offsets) in zip(clips, seconds, tokens, placed)
            ])  # fmt: skip
        return out

    def clip_settings(self, batch: list[Request], clips: list, inputs) -> list[dict]:
        """Per sample, each clip's audio tokens and the seconds the encoder took (cut at 30 s); a clip without tokens is refused."""
        if not clips:
            return [{} for _ in batch]
        _, tokens = self.model.model.audio_tower._get_feat_extract_output_lengths(inputs["feature_attention_mask"].sum(-1))
        extractor = self.processor.feature_extractor
        seconds = [min(len(clip), extractor.n_samples) / extractor.sampling_rate for clip in clips]
        if (tokens < 1).any():
            short = min(len(clip) for clip in clips)
            raise UsageError(
                f"{self.MODEL_ID}: an audio clip of {short} samples at {extractor.sampling_rate} Hz gives Qwen2-Audio no "
                f"audio token; it needs at least {2 * extractor.hop_length + 1} samples"
            )
        clips, out = iter(zip(tokens.tolist(), seconds)), []
        for request in batch:
            mine = [next(clips) for _ in request.visuals]
            out.append({"audio_tokens": [t for t, _ in mine], "audio_seconds": [s for _, s in mine]})
        return out

    @torch.inference_mode()
    def audio_features(self, input_features: torch.Tensor, feature_attention_mask: torch.Tensor) -> list[torch.Tensor]:
        """Projected audio-tower output per clip, cut to its token count.

        The same computation ``Qwen2AudioModel.forward`` runs before it scatters the features into the
        ``<|AUDIO|>`` positions (the model exposes no separate method for it).
        """
        inner = self.model.model
        tower = inner.audio_tower
        mel_lengths = feature_attention_mask.to(tower.device).sum(-1)
        conv_lengths, token_lengths = tower._get_feat_extract_output_lengths(mel_lengths)
        frames = (input_features.shape[-1] - 2) // 2 + 1  # encoder positions after the strided convolution
        valid = torch.arange(frames, device=tower.device)[None, :] < conv_lengths[:, None]
        mask = create_bidirectional_mask(
            config=tower.config,
            inputs_embeds=torch.zeros(valid.shape[0], frames, 1, dtype=self.dtype, device=tower.device),
            attention_mask=valid.long(),
        )
        hidden = tower(input_features.to(tower.device, tower.dtype), attention_mask=mask).last_hidden_state
        projected = inner.multi_modal_projector(hidden)
        return [projected[i, :n] for i, n in enumerate(token_lengths.tolist())]

    @torch.inference_mode()
    def edited_inputs(self, inputs, classes: PositionClasses) -> Prepared:
        ids = inputs["input_ids"].to(self.device)
        features = self.audio_features(inputs["input_features"], inputs["feature_attention_mask"])
        embeds = self.model.get_input_embeddings()(ids)
        embeds[ids == self.model.config.audio_token_index] = torch.cat(features).to(embeds.device, embeds.dtype)
        audio = classes.names.index("audio")
        edited, classes, counts = edit_nontext(
            classes, {audio: [f.shape[0] for f in features]}, None, 0.0, self.args["nontext_repeat"],
            {"inputs_embeds": (embeds, 0.0), "attention_mask": (inputs["attention_mask"], 0)},
        )  # fmt: skip
        return Prepared(edited, classes, counts)
