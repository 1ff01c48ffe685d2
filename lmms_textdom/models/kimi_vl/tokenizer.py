"""Kimi-VL's tokenizer from the checkpoint's own files, without its remote code.

Kimi-VL ships ``tiktoken.model`` (base64 byte strings and their BPE ranks) and a
``tokenizer_config.json`` whose ``added_tokens_decoder`` names the special tokens; its remote
``TikTokenTokenizer`` splits text with the pattern below and numbers 256 (+2) special-token slots
right after the ranks, unnamed slots becoming ``<|reserved_token_{id}|>``. The same ranks, pattern
and slots are built here into a ``PreTrainedTokenizerFast`` (tiktoken's ranks as a byte-level BPE,
as transformers' ``TikTokenConverter`` does), so padding, decoding and stop strings work as for any
other checkpoint. Like the original, it adds no BOS.
"""

from __future__ import annotations

import json

from tokenizers import AddedToken, Regex, Tokenizer, decoders, pre_tokenizers
from transformers import PreTrainedTokenizerFast
from transformers.convert_slow_tokenizer import TikTokenConverter

from lmms_textdom.models.checkpoint import checkpoint_file

#: Kimi's pre-tokenization pattern (tokenization_kimi.py): Han runs split apart from other letters
PATTERN = "|".join((
    r"""[\p{Han}]+""",
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]*[\p{Ll}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]+[\p{Ll}\p{Lm}\p{Lo}\p{M}&&[^\p{Han}]]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
    r"""\p{N}{1,3}""",
    r""" ?[^\s\p{L}\p{N}]+[\r\n]*""",
    r"""\s*[\r\n]+""",
    r"""\s+(?!\S)""",
    r"""\s+""",
))  # fmt: skip
#: special-token slots after the BPE ranks (the remote tokenizer's num_reserved_special_tokens + 2)
SPECIAL_SLOTS = 256 + 2


def special_tokens(tokenizer_config: dict, num_ranks: int) -> list[str]:
    """Every special-token slot in id order, named from ``added_tokens_decoder`` where it names it."""
    named = {int(i): entry["content"] for i, entry in tokenizer_config.get("added_tokens_decoder", {}).items()}
    return [named.get(i, f"<|reserved_token_{i}|>") for i in range(num_ranks, num_ranks + SPECIAL_SLOTS)]


def load_kimi_tokenizer(pretrained: str, revision: str = "main") -> PreTrainedTokenizerFast:
    vocab_file = checkpoint_file(pretrained, "tiktoken.model", revision)
    config = json.loads(checkpoint_file(pretrained, "tokenizer_config.json", revision).read_text())
    converter = TikTokenConverter(vocab_file=str(vocab_file), pattern=PATTERN)
    core: Tokenizer = converter.tokenizer()
    core.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])  # fmt: skip
    core.decoder = decoders.ByteLevel()
    num_ranks = core.get_vocab_size()
    # added in id order, each takes the next id: the slots land exactly where Kimi numbers them
    core.add_special_tokens([AddedToken(name, normalized=False, special=True) for name in special_tokens(config, num_ranks)])
    names = {k: config.get(k) for k in ("bos_token", "eos_token", "unk_token", "pad_token")}
    if names["pad_token"] is None:
        names["pad_token"] = names["eos_token"]
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, chat_template=config.get("chat_template"), padding_side="left",
        model_max_length=config.get("model_max_length", 1048576), clean_up_tokenization_spaces=False,
        **{k: v for k, v in names.items() if v is not None},
    )  # fmt: skip
    return tokenizer
