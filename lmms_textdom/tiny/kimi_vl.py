"""A tiny Kimi-VL checkpoint written in the hub's own layout (remote-code keys, kimi_vl config, tiktoken vocabulary).

Nothing here goes through transformers' model classes: the tensors are drawn at random under the
original key names (fused ``wqkv``, ``norm0/norm1``, ``mlp.fc0/fc1``, per-expert weights,
``multi_modal_projector.*``, ``language_model.*``), so loading it exercises the same translation a
real ``moonshotai/Kimi-VL-A3B-Instruct`` download needs. The language model is a DeepSeek-V3 with
MLA attention (query/key head dim 12, value head dim 8) whose first layer is dense and the rest
mixture-of-experts; MoonViT has a 4 x 4 position table, so most images interpolate it.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from lmms_textdom.tiny.tokenizer import CORPUS

#: Kimi-VL's special tokens by offset from the end of the BPE ranks (163584 = [BOS] in the real vocabulary)
SPECIAL_OFFSETS = {
    0: "[BOS]", 1: "[EOS]", 2: "<|im_end|>", 3: "<|im_user|>", 4: "<|im_assistant|>", 6: "<|start_header_id|>",
    7: "<|end_header_id|>", 9: "[EOT]", 10: "<|im_system|>", 17: "<|im_middle|>", 18: "<|media_start|>",
    19: "<|media_content|>", 20: "<|media_end|>", 21: "<|media_pad|>", 254: "[UNK]", 255: "[PAD]",
}  # fmt: skip
# Kimi-VL's chat template (the documented layout, as the hub's tokenizer_config carries it)
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{%- if loop.first and messages[0]['role'] != 'system' -%}"
    "<|im_system|>system<|im_middle|>You are a helpful assistant<|im_end|>"
    "{%- endif -%}"
    "{%- if message['role'] == 'system' -%}<|im_system|>{%- endif -%}"
    "{%- if message['role'] == 'user' -%}<|im_user|>{%- endif -%}"
    "{%- if message['role'] == 'assistant' -%}<|im_assistant|>{%- endif -%}"
    "{{- message['role'] -}}<|im_middle|>"
    "{%- if message['content'] is string -%}{{- message['content'] + '<|im_end|>' -}}"
    "{%- else -%}{%- for content in message['content'] -%}"
    "{%- if content['type'] == 'image' or 'image' in content or 'image_url' in content -%}"
    "<|media_start|>image<|media_content|><|media_pad|><|media_end|>"
    "{%- else -%}{{- content['text'] -}}{%- endif -%}"
    "{%- endfor -%}<|im_end|>{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|im_assistant|>assistant<|im_middle|>{%- endif -%}"
)


#: Kimi-VL-A3B-Thinking writes its reasoning between ◁think▷ and ◁/think▷, plain text of its BPE
#: vocabulary (``◁`` + ``think`` + ``▷``, no added token): taught to the tiny ranks the same way
THINKING = ["◁think▷ the image shows a cat ◁/think▷ the answer is a"] * 4


def bpe_ranks(merges: int = 200) -> dict[bytes, int]:
    """Byte-level BPE ranks learned on the shared tiny corpus: the 256 bytes, then each merge."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=256 + merges, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    core.train_from_iterator([*CORPUS, "system user assistant image You are a helpful assistant", *THINKING], trainer)
    byte_of = {char: byte for byte, char in bytes_to_unicode().items()}
    ranks = {bytes([b]): b for b in range(256)}
    for left, right in json.loads(core.to_str())["model"]["merges"]:
        token = bytes(byte_of[c] for c in left + right)
        ranks.setdefault(token, len(ranks))
    return ranks


def write_tokenizer(path: Path) -> dict[str, int]:
    """``tiktoken.model`` + ``tokenizer_config.json`` as Kimi-VL ships them; returns the special token ids."""
    ranks = bpe_ranks()
    lines = [f"{base64.b64encode(token).decode()} {rank}" for token, rank in sorted(ranks.items(), key=lambda kv: kv[1])]
    (path / "tiktoken.model").write_text("\n".join(lines) + "\n")
    base = len(ranks)
    specials = {name: base + offset for offset, name in SPECIAL_OFFSETS.items()}
    added = {str(i): {"content": name, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False, "special": True}
             for name, i in specials.items()}  # fmt: skip
    config = {
        "added_tokens_decoder": added,
        "additional_special_tokens": ["<|im_end|>", "<|im_user|>", "<|im_assistant|>", "<|start_header_id|>",
                                      "<|end_header_id|>", "[EOT]", "<|im_system|>", "<|im_middle|>"],
        "auto_map": {"AutoTokenizer": ["tokenization_moonshot.TikTokenTokenizer", None]},
        "bos_token": "[BOS]", "eos_token": "[EOS]", "pad_token": "[PAD]", "unk_token": "[UNK]",
        "chat_template": CHAT_TEMPLATE, "clean_up_tokenization_spaces": False,
        "model_max_length": 1048576, "tokenizer_class": "TikTokenTokenizer",
    }  # fmt: skip
    (path / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    return specials


def kimi_vl_config(specials: dict[str, int], vocab_size: int, vision_hidden: int = 32, text_hidden: int = 32) -> dict:
    """A ``config.json`` in Kimi-VL's format (the hub's fields, tiny sizes)."""
    vision = {
        "model_type": "moonvit", "patch_size": 14, "init_pos_emb_height": 4, "init_pos_emb_width": 4,
        "num_attention_heads": 2, "num_hidden_layers": 2, "hidden_size": vision_hidden,
        "intermediate_size": 2 * vision_hidden, "merge_kernel_size": [2, 2],
    }  # fmt: skip
    text = {
        "model_type": "deepseek_v3", "architectures": ["DeepseekV3ForCausalLM"],
        "auto_map": {"AutoConfig": "configuration_deepseek.DeepseekV3Config"},
        "vocab_size": vocab_size, "hidden_size": text_hidden, "intermediate_size": 2 * text_hidden,
        "moe_intermediate_size": 16, "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 4,
        "n_shared_experts": 1, "n_routed_experts": 4, "ep_size": 1, "routed_scaling_factor": 2.446,
        "kv_lora_rank": 16, "q_lora_rank": None, "qk_rope_head_dim": 4, "v_head_dim": 8, "qk_nope_head_dim": 8,
        "topk_method": "noaux_tc", "n_group": 1, "topk_group": 1, "num_experts_per_tok": 2, "moe_layer_freq": 1,
        "first_k_dense_replace": 1, "norm_topk_prob": True, "scoring_func": "sigmoid", "aux_loss_alpha": 0.001,
        "seq_aux": True, "hidden_act": "silu", "max_position_embeddings": 131072, "initializer_range": 0.02,
        "rms_norm_eps": 1e-5, "use_cache": True, "pad_token_id": specials["[PAD]"], "bos_token_id": specials["[BOS]"],
        "eos_token_id": specials["[EOS]"], "pretraining_tp": 1, "tie_word_embeddings": False, "rope_theta": 800000.0,
        "rope_scaling": None, "attention_bias": False, "attention_dropout": 0.0, "num_nextn_predict_layers": 0,
    }  # fmt: skip
    return {
        "architectures": ["KimiVLForConditionalGeneration"],
        "auto_map": {"AutoConfig": "configuration_kimi_vl.KimiVLConfig",
                     "AutoModel": "modeling_kimi_vl.KimiVLForConditionalGeneration",
                     "AutoModelForCausalLM": "modeling_kimi_vl.KimiVLForConditionalGeneration"},
        "model_type": "kimi_vl", "vision_config": vision, "text_config": text, "ignore_index": -100,
        "media_placeholder_token_id": specials["<|media_pad|>"], "pad_token_id": 0, "torch_dtype": "float32",
    }  # fmt: skip


def original_state_dict(config: dict, seed: int = 0, std: float = 0.2) -> dict[str, torch.Tensor]:
    """Random tensors under Kimi-VL's own key names and shapes."""
    g = torch.Generator().manual_seed(seed)
    v, t = config["vision_config"], config["text_config"]

    def rand(*shape, scale=std):
        return torch.randn(*shape, generator=g) * scale

    def norm(n, bias=True):  # a norm's weight near 1 (and bias near 0) keeps activations in range
        return {"weight": 1 + rand(n, scale=0.1), **({"bias": rand(n, scale=0.1)} if bias else {})}

    def linear(out, inp, bias=True):
        return {"weight": rand(out, inp, scale=inp**-0.5), **({"bias": rand(out, scale=0.1)} if bias else {})}

    sd: dict[str, torch.Tensor] = {}

    def put(prefix, tensors):
        sd.update({f"{prefix}.{k}": val for k, val in tensors.items()})

    d, p = v["hidden_size"], v["patch_size"]
    put("vision_tower.patch_embed.proj", {"weight": rand(d, 3, p, p, scale=(3 * p * p) ** -0.5), "bias": rand(d, scale=0.1)})
    sd["vision_tower.patch_embed.pos_emb.weight"] = rand(v["init_pos_emb_height"], v["init_pos_emb_width"], d, scale=0.5)
    for i in range(v["num_hidden_layers"]):
        block = f"vision_tower.encoder.blocks.{i}"
        put(f"{block}.norm0", norm(d))
        put(f"{block}.norm1", norm(d))
        put(f"{block}.wqkv", linear(3 * d, d))
        put(f"{block}.wo", linear(d, d))
        put(f"{block}.mlp.fc0", linear(v["intermediate_size"], d))
        put(f"{block}.mlp.fc1", linear(d, v["intermediate_size"]))
    put("vision_tower.encoder.final_layernorm", norm(d))
    merged = d * v["merge_kernel_size"][0] * v["merge_kernel_size"][1]
    put("multi_modal_projector.pre_norm", norm(d))
    put("multi_modal_projector.linear_1", linear(merged, merged))
    put("multi_modal_projector.linear_2", linear(t["hidden_size"], merged))

    h, heads = t["hidden_size"], t["num_attention_heads"]
    qk, rope, vd, rank = t["qk_nope_head_dim"] + t["qk_rope_head_dim"], t["qk_rope_head_dim"], t["v_head_dim"], t["kv_lora_rank"]
    lm = "language_model.model"
    sd[f"{lm}.embed_tokens.weight"] = rand(t["vocab_size"], h, scale=1.0)
    for i in range(t["num_hidden_layers"]):
        layer = f"{lm}.layers.{i}"
        put(f"{layer}.input_layernorm", norm(h, bias=False))
        put(f"{layer}.post_attention_layernorm", norm(h, bias=False))
        put(f"{layer}.self_attn.q_proj", linear(heads * qk, h, bias=False))
        put(f"{layer}.self_attn.kv_a_proj_with_mqa", linear(rank + rope, h, bias=False))
        put(f"{layer}.self_attn.kv_a_layernorm", norm(rank, bias=False))
        put(f"{layer}.self_attn.kv_b_proj", linear(heads * (t["qk_nope_head_dim"] + vd), rank, bias=False))
        put(f"{layer}.self_attn.o_proj", linear(h, heads * vd, bias=False))
        if i < t["first_k_dense_replace"]:
            inner = t["intermediate_size"]
            for name, shape in {"gate_proj": (inner, h), "up_proj": (inner, h), "down_proj": (h, inner)}.items():
                put(f"{layer}.mlp.{name}", linear(*shape, bias=False))
            continue
        m, experts = t["moe_intermediate_size"], t["n_routed_experts"]
        sd[f"{layer}.mlp.gate.weight"] = rand(experts, h, scale=h**-0.5)
        sd[f"{layer}.mlp.gate.e_score_correction_bias"] = rand(experts, scale=0.1)
        for e in range(experts):
            for name, shape in {"gate_proj": (m, h), "up_proj": (m, h), "down_proj": (h, m)}.items():
                put(f"{layer}.mlp.experts.{e}.{name}", linear(*shape, bias=False))
        shared = m * t["n_shared_experts"]
        for name, shape in {"gate_proj": (shared, h), "up_proj": (shared, h), "down_proj": (h, shared)}.items():
            put(f"{layer}.mlp.shared_experts.{name}", linear(*shape, bias=False))
    put(f"{lm}.norm", norm(h, bias=False))
    sd["language_model.lm_head.weight"] = rand(t["vocab_size"], h, scale=h**-0.5)
    return sd


def save_kimi_vl(
    path: str | Path, seed: int = 0, in_token_limit: int = 64, image_mean=(0.5, 0.5, 0.5), image_std=(0.5, 0.5, 0.5)
) -> Path:
    """Write the checkpoint folder: config, weights, tokenizer, preprocessor and generation configs.

    ``in_token_limit`` patches (64 = an 8 x 8 grid) is where images start to be downscaled.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    specials = write_tokenizer(path)
    vocab_size = specials["[BOS]"] + 256  # as in Kimi-VL: 163584 BPE ranks + 256 special slots
    config = kimi_vl_config(specials, vocab_size)
    (path / "config.json").write_text(json.dumps(config, indent=2))
    save_file(original_state_dict(config, seed), str(path / "model.safetensors"), metadata={"format": "pt"})
    preprocessor = {
        "auto_map": {"AutoImageProcessor": "image_processing_kimi_vl.KimiVLImageProcessor",
                     "AutoProcessor": "processing_kimi_vl.KimiVLProcessor"},
        "image_processor_type": "KimiVLImageProcessor", "processor_class": "KimiVLProcessor",
        "in_token_limit": in_token_limit, "patch_size": 14, "num_pooled_tokens": in_token_limit // 4,
        "merge_kernel_size": [2, 2], "pad_input": True, "image_mean": list(image_mean), "image_std": list(image_std),
    }  # fmt: skip
    (path / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2))
    generation = {"bos_token_id": specials["[BOS]"], "eos_token_id": [specials["<|im_end|>"], specials["[EOS]"]],
                  "pad_token_id": specials["[PAD]"]}  # fmt: skip
    (path / "generation_config.json").write_text(json.dumps(generation, indent=2))
    return path
