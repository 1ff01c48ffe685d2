"""The project-venv half of ``make vllm-check`` (see scripts/vllm-check.sh).

``prepare WORK``: a tiny LLaVA whose language model vLLM's CPU backend accepts (head_dim 64), that
language model alone as a Llama checkpoint with LLaVA's tokenizer and chat template (vLLM cannot
load the LLaVA itself here: its LLaVA code imports transformers' Pixtral image processor, which
needs torchvision), and a text-only lmms-eval task.
``compare WORK``: the vLLM answers, our generate run and the measured vLLM logs, sample by sample.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

TASK_YAML = """task: textonly
dataset_path: json
dataset_kwargs:
  data_files:
    test: data.jsonl
test_split: test
output_type: generate_until
doc_to_text: question
doc_to_target: answer
process_results: !function utils.process_results
generation_kwargs:
  max_new_tokens: 12
  until: []
  do_sample: false
  temperature: 0
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
"""
TASK_UTILS = '''def process_results(doc, results):
    return {"exact_match": float(results[0].strip() == doc["answer"])}
'''
QUESTIONS = (
    "what is the answer ? a or b", "the cat sat on the mat . where is the cat ?",
    "which option is correct ? the first", "answer with the option letter from the given choices directly . a b c d",
)  # fmt: skip


def word_tokenizer(like):
    """A word-level tokenizer with ``like``'s size and special-token ids: every id is one whole word, so any
    answer decodes to words that encode back to the same ids (a random tiny model's byte-level BPE output
    does not: its byte fragments decode lossily, and the re-encoded text has other, more tokens)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from lmms_textdom.tiny.tokenizer import CORPUS

    words = list(dict.fromkeys(["USER:", "ASSISTANT:", *(w for line in [*CORPUS, *QUESTIONS] for w in line.split())]))
    specials = {t: like.convert_tokens_to_ids(t) for t in like.all_special_tokens}
    vocab, fill = dict(specials), iter([*words, *(f"w{i}" for i in range(len(like)))])
    for i in range(len(like)):
        if i not in vocab.values():
            vocab[next(w for w in fill if w not in vocab)] = i
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    core.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    tok = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>")
    tok.add_special_tokens({"additional_special_tokens": [t for t in specials if t not in ("<s>", "</s>", "<pad>", "<unk>")]})
    tok.chat_template = like.chat_template
    assert all(tok.convert_tokens_to_ids(t) == i for t, i in specials.items()) and len(tok) == len(like)
    return tok


def prepare(work: Path) -> None:
    import torch
    from transformers import AutoProcessor, LlamaForCausalLM, LlavaForConditionalGeneration

    from lmms_textdom.tiny import save_llava

    llava_dir = save_llava(work / "tiny-llava", num_layers=2, hidden_size=128, num_heads=2, num_kv_heads=2)
    processor = AutoProcessor.from_pretrained(llava_dir)
    processor.tokenizer = word_tokenizer(processor.tokenizer)
    processor.save_pretrained(llava_dir)
    llava = LlavaForConditionalGeneration.from_pretrained(llava_dir, dtype=torch.float32)
    processor = AutoProcessor.from_pretrained(llava_dir)
    lm = LlamaForCausalLM(llava.config.text_config)
    state = {f"model.{k}": v for k, v in llava.model.language_model.state_dict().items()}
    lm.load_state_dict({**state, "lm_head.weight": llava.lm_head.weight}, strict=True)
    lm.generation_config = llava.generation_config
    tokenizer = processor.tokenizer
    tokenizer.chat_template = processor.chat_template  # vLLM's chat renders the same prompt as our adapter
    lm.save_pretrained(work / "tiny-llava-lm")
    tokenizer.save_pretrained(work / "tiny-llava-lm")
    task = work / "task"
    task.mkdir(parents=True, exist_ok=True)
    (task / "data.jsonl").write_text("\n".join(json.dumps({"question": q, "answer": "b"}) for q in QUESTIONS))
    (task / "textonly.yaml").write_text(TASK_YAML)
    (task / "utils.py").write_text(TASK_UTILS)


def _samples(folder: Path, pattern: str) -> dict[int, dict]:
    (path,) = folder.rglob(pattern)  # rglob: lmms-eval names the model folder after a path that starts with "."
    return {row["doc_id"]: row for row in map(json.loads, Path(path).read_text().splitlines())}


def compare(work: Path) -> None:
    import numpy as np

    vllm, generated = _samples(work / "out_vllm", "*_samples_textonly.jsonl"), _samples(work / "out_generated", "*_samples_*.jsonl")
    measured = _samples(work / "out_measured", "*_samples_*.jsonl")
    print("| doc | vLLM text = generate text | rows: generate / measured | measured answer | max rel. mass diff |")
    print("|---|---|---|---|---|")
    for d in sorted(generated):
        text = generated[d]["filtered_resps"]
        text = text[0] if isinstance(text, list) else text
        g, m = generated[d]["textdom"]["stats"], measured[d]["textdom"]["stats"]
        mass_g, mass_m = np.array(g["mass"]), np.array(m["mass"])
        diff = float(np.max(np.abs(mass_g - mass_m) / np.maximum(np.abs(mass_g), 1e-6)))
        answer = measured[d]["textdom"]["answer"]
        print(f"| {d} | {vllm[d]['filtered_resps'] == text} | {g['rows']} / {m['rows']} | {answer} | {diff:.2e} |")


if __name__ == "__main__":
    {"prepare": prepare, "compare": compare}[sys.argv[1]](Path(sys.argv[2]))
