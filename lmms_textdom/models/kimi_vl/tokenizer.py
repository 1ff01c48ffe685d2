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
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, pre_tokenizers
from transformers import PreTrainedTokenizerFast
from transformers.convert_slow_tokenizer import TikTokenConverter
from transformers.utils import cached_file

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


def checkpoint_chat_template(pretrained: str, tokenizer_config: dict, revision: str = "main") -> str | None:
    """The chat template the checkpoint carries: in its tokenizer config, else ``chat_template.jinja`` / ``.json``."""
    if tokenizer_config.get("chat_template"):
        return tokenizer_config["chat_template"]
    for name in ("chat_template.jinja", "chat_template.json"):
        path = cached_file(
            pretrained, name, revision=revision,
            _raise_exceptions_for_missing_entries=False, _raise_exceptions_for_connection_errors=False,
        )  # fmt: skip
        if path:
            text = Path(path).read_text()
            return json.loads(text)["chat_template"] if name.endswith(".json") else text
    return None


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
    # each may be a string or a serialized AddedToken
    names = {k: (v["content"] if isinstance(v, dict) else v) for k in ("bos_token", "eos_token", "unk_token", "pad_token")
             if (v := config.get(k)) is not None}  # fmt: skip
    names.setdefault("pad_token", names.get("eos_token"))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, chat_template=checkpoint_chat_template(pretrained, config, revision), padding_side="left",
        model_max_length=config.get("model_max_length", 1048576), clean_up_tokenization_spaces=False,
        **names,
    )  # fmt: skip
    return tokenizer
