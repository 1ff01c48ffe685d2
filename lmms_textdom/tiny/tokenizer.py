"""A byte-level BPE tokenizer (the kind real checkpoints ship) trained in-process on a few sentences."""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

CORPUS = [
    "the cat sat on the mat and looked at the picture",
    "answer with the option letter from the given choices directly",
    "answer : a b c d e f g h i j",
    "what is shown in the image ? describe the video and the audio",
    "the question is about a chart , a table , a diagram or a photo",
    "which option is correct ? the first , the second or the third",
    "recognize the emotion with keywords in english : happy sad angry neutral excited",
    "user : assistant : system : you are a helpful assistant .",
    "1 2 3 4 5 6 7 8 9 0 time series graph node paper",
]
BASE_SPECIALS = ["<pad>", "<unk>", "<s>", "</s>"]


def build_tokenizer(special_tokens: list[str] = (), chat_template: str | None = None) -> PreTrainedTokenizerFast:
    """``special_tokens`` are added as unsplittable tokens (placeholders such as ``<image>``)."""
    # Byte-level: every string encodes (no <unk>) and decodes back exactly, newlines included.
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=420, special_tokens=BASE_SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    core.train_from_iterator(CORPUS, trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        model_max_length=32768,
    )
    if special_tokens:
        tok.add_special_tokens({"additional_special_tokens": list(special_tokens)})
    if chat_template is not None:
        tok.chat_template = chat_template
    return tok
