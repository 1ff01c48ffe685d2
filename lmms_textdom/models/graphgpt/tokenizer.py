"""GraphGPT's tokenizer, encoding prompts to the ids GraphGPT's own evaluation fed its model.

``Jiabin99/GraphGPT-7B-mix-all`` ships Llama's sentencepiece ``tokenizer.model`` with Vicuna-7B
v1.5's ``tokenizer_config.json`` (``legacy: false``), ``added_tokens.json`` (``<g_patch>``,
``<g_start>``, ``<g_end>``) and no ``tokenizer.json``. GraphGPT evaluated under transformers 4.31,
whose ``AutoTokenizer`` converted that file to a fast tokenizer that ignores ``legacy``: the added
tokens are split off the raw text first and every text chunk between them is then encoded as
sentencepiece encodes a string on its own, dummy prefix ``▁`` included. So a ``\\n`` after
``<g_end>`` becomes ``▁ <0x0A>``.

transformers 5's ``LlamaTokenizer`` follows ``legacy: false`` (a prefix at the start of the text
only: one token fewer per graph) and, even with ``legacy=True``, drops the prefix of a chunk that
starts with a space. The generic fast tokenizer built from the ``.model`` with ``legacy=True``
follows the sentencepiece model's own settings, chunk by chunk, which is what 4.31 did. A
checkpoint that ships a ``tokenizer.json`` is loaded from it as it is, as 4.31 did too.
"""

from __future__ import annotations

from transformers import PreTrainedTokenizerFast

from lmms_textdom.core.errors import UsageError


def load_tokenizer(pretrained: str, revision: str = "main") -> PreTrainedTokenizerFast:
    try:
        return PreTrainedTokenizerFast.from_pretrained(pretrained, revision=revision, legacy=True)
    except (ImportError, ValueError, OSError) as exc:
        raise UsageError(
            f"cannot load the tokenizer of {pretrained}: {str(exc).splitlines()[0]}\n"
            "A sentencepiece tokenizer.model needs: pip install sentencepiece protobuf"
        ) from exc
