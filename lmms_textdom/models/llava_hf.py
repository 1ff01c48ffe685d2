"""``llava_hf_textdom``: LLaVA-1.5 checkpoints in the transformers format (llava-hf/llava-1.5-*-hf)."""

from __future__ import annotations

from transformers import AutoConfig, AutoProcessor, LlavaForConditionalGeneration

from lmms_textdom.errors import UsageError
from lmms_textdom.modality import classify_tokens
from lmms_textdom.models.base import Prepared, Request, TextdomModel

# LLaVA-1.5's conversation format, for checkpoints whose processor carries no chat template.
FALLBACK_PROMPT = "USER: {images}{text} ASSISTANT:"


class LlavaHfTextdom(TextdomModel):
    MODEL_ID = "llava_hf_textdom"
    DEFAULT_PRETRAINED = "llava-hf/llava-1.5-7b-hf"

    def check_args(self) -> None:
        config = AutoConfig.from_pretrained(
            self.args["pretrained"], revision=self.args["revision"], trust_remote_code=self.args["trust_remote_code"]
        )
        if config.model_type != "llava":
            raise UsageError(
                f"{self.MODEL_ID} loads LLaVA-1.5 checkpoints (model_type 'llava'); {self.args['pretrained']} is "
                f"model_type {config.model_type!r}"
            )

    def load(self):
        pretrained = self.args["pretrained"]
        model = LlavaForConditionalGeneration.from_pretrained(pretrained, **self.from_pretrained_kwargs())
        processor = AutoProcessor.from_pretrained(
            pretrained, revision=self.args["revision"], trust_remote_code=self.args["trust_remote_code"]
        )
        processor.tokenizer.padding_side = "left"  # decoder-only batching
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
        return Prepared(dict(inputs), classes)
