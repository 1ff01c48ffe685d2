"""Independent references for Kimi-VL, written from the original (remote-code) semantics on its own keys.

MoonViT: patch conv, the learned position table bicubic-resized with ``F.interpolate`` when the grid
differs, 2-D RoPE as complex rotations of adjacent channel pairs (interleaved column/row
frequencies), pre-LN blocks with attention per image, final LayerNorm, 2 x 2 patch merge, and the
projector (LayerNorm per patch vector, linear, exact GELU, linear).
DeepSeek-V3: MLA with a plain q projection, the compressed KV latent (its own RMSNorm, eps 1e-6),
interleaved RoPE on the rope part, noaux_tc routing (sigmoid scores, bias for the choice only,
renormalised top-k times the scaling factor) plus shared experts, and a dense first layer.
Nothing here imports transformers' kimi_k25 or deepseek_v3 code.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _linear(sd, prefix, x):
    return F.linear(x, sd[f"{prefix}.weight"], sd.get(f"{prefix}.bias"))


def _layer_norm(sd, prefix, x, eps=1e-5):
    return F.layer_norm(x, x.shape[-1:], sd[f"{prefix}.weight"], sd[f"{prefix}.bias"], eps)


def _rope_2d(rows: int, cols: int, head_dim: int, theta: float = 10000.0) -> torch.Tensor:
    """(rows * cols, head_dim / 2) complex rotations: per frequency a column (x) then a row (y) pair."""
    freqs = 1.0 / theta ** (torch.arange(0, head_dim, 4)[: head_dim // 4].float() / head_dim)
    y, x = torch.meshgrid(torch.arange(rows).float(), torch.arange(cols).float(), indexing="ij")
    x_cis = torch.polar(torch.ones(rows * cols, len(freqs)), torch.outer(x.flatten(), freqs))
    y_cis = torch.polar(torch.ones(rows * cols, len(freqs)), torch.outer(y.flatten(), freqs))
    return torch.stack([x_cis, y_cis], dim=-1).reshape(rows * cols, -1)


def _apply_rope(x: torch.Tensor, cis: torch.Tensor) -> torch.Tensor:
    pairs = torch.view_as_complex(x.float().reshape(*x.shape[:-1], -1, 2))
    return torch.view_as_real(pairs * cis[:, None]).flatten(-2)


def moonvit_features(sd: dict, config: dict, pixel_values: torch.Tensor, grids: list[tuple[int, int]]) -> list[torch.Tensor]:
    """Projected merged tokens per image from Kimi-VL's own weights; ``pixel_values`` (N, 3, 14, 14) raster per image."""
    v = config["vision_config"]
    heads, d = v["num_attention_heads"], v["hidden_size"]
    head_dim = d // heads
    x = F.conv2d(pixel_values, sd["vision_tower.patch_embed.proj.weight"], sd["vision_tower.patch_embed.proj.bias"]).flatten(1)
    table = sd["vision_tower.patch_embed.pos_emb.weight"]
    positions, rotations = [], []
    for rows, cols in grids:
        if (rows, cols) == tuple(table.shape[:2]):
            positions.append(table.flatten(0, 1))
        else:
            resized = F.interpolate(table.permute(2, 0, 1)[None], size=(rows, cols), mode="bicubic", align_corners=False)
            positions.append(resized[0].permute(1, 2, 0).flatten(0, 1))
        rotations.append(_rope_2d(rows, cols, head_dim))
    x = x + torch.cat(positions)
    cis = torch.cat(rotations)
    bounds = [0, *torch.tensor([r * c for r, c in grids]).cumsum(0).tolist()]
    for i in range(v["num_hidden_layers"]):
        block = f"vision_tower.encoder.blocks.{i}"
        qkv = _linear(sd, f"{block}.wqkv", _layer_norm(sd, f"{block}.norm0", x)).view(-1, 3, heads, head_dim)
        q, k, val = _apply_rope(qkv[:, 0], cis), _apply_rope(qkv[:, 1], cis), qkv[:, 2]
        out = []
        for start, end in zip(bounds[:-1], bounds[1:]):
            weights = torch.einsum("qhd,khd->hqk", q[start:end], k[start:end]) / math.sqrt(head_dim)
            out.append(torch.einsum("hqk,khd->qhd", weights.softmax(-1), val[start:end]).flatten(1))
        x = x + _linear(sd, f"{block}.wo", torch.cat(out))
        hidden = F.gelu(_linear(sd, f"{block}.mlp.fc0", _layer_norm(sd, f"{block}.norm1", x)), approximate="tanh")
        x = x + _linear(sd, f"{block}.mlp.fc1", hidden)
    x = _layer_norm(sd, "vision_tower.encoder.final_layernorm", x)
    features = []
    for (rows, cols), start in zip(grids, bounds):
        image = x[start : start + rows * cols].view(rows // 2, 2, cols // 2, 2, d).permute(0, 2, 1, 3, 4).reshape(-1, 4, d)
        merged = _layer_norm(sd, "multi_modal_projector.pre_norm", image).reshape(len(image), 4 * d)
        hidden = F.gelu(_linear(sd, "multi_modal_projector.linear_1", merged))
        features.append(_linear(sd, "multi_modal_projector.linear_2", hidden))
    return features


def _rms_norm(weight, x, eps):
    x = x.float()
    return weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def _rotate_half(x):
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


def _interleaved_rope(x, cos, sin):
    """DeepSeek's RoPE: channel pairs (2i, 2i+1) de-interleaved into halves, then rotate-half."""
    b, h, s, d = x.shape
    x = x.view(b, h, s, d // 2, 2).transpose(4, 3).reshape(b, h, s, d)
    return x * cos + _rotate_half(x) * sin


def _swiglu(sd, prefix, x):
    return F.linear(F.silu(F.linear(x, sd[f"{prefix}.gate_proj.weight"])) * F.linear(x, sd[f"{prefix}.up_proj.weight"]),
                    sd[f"{prefix}.down_proj.weight"])  # fmt: skip


def _moe(sd, prefix, t, x):
    flat = x.reshape(-1, x.shape[-1])
    scores = F.linear(flat.float(), sd[f"{prefix}.gate.weight"].float()).sigmoid()
    chosen = (scores + sd[f"{prefix}.gate.e_score_correction_bias"]).topk(t["num_experts_per_tok"], dim=-1).indices
    weights = scores.gather(1, chosen)
    weights = weights / (weights.sum(-1, keepdim=True) + 1e-20) * t["routed_scaling_factor"]
    out = torch.zeros_like(flat)
    for token in range(flat.shape[0]):
        for slot in range(chosen.shape[1]):
            expert = f"{prefix}.experts.{int(chosen[token, slot])}"
            out[token] += weights[token, slot] * _swiglu(sd, expert, flat[token])
    return out.view_as(x) + _swiglu(sd, f"{prefix}.shared_experts", x)


def deepseek_logits(sd: dict, config: dict, embeds: torch.Tensor) -> torch.Tensor:
    """Logits (1, seq, vocab) of Kimi-VL's language model over input embeddings of one unpadded sequence."""
    t = config["text_config"]
    heads, nope, rope, vd = t["num_attention_heads"], t["qk_nope_head_dim"], t["qk_rope_head_dim"], t["v_head_dim"]
    rank, eps = t["kv_lora_rank"], t["rms_norm_eps"]
    b, s, _ = embeds.shape
    inv_freq = 1.0 / (t["rope_theta"] ** (torch.arange(0, rope, 2).float() / rope))
    angles = torch.outer(torch.arange(s).float(), inv_freq)
    cos, sin = torch.cat([angles, angles], -1).cos(), torch.cat([angles, angles], -1).sin()
    causal = torch.full((s, s), float("-inf")).triu(1)
    x = embeds
    lm = "language_model.model"
    for i in range(t["num_hidden_layers"]):
        layer = f"{lm}.layers.{i}"
        h = _rms_norm(sd[f"{layer}.input_layernorm.weight"], x, eps)
        q = F.linear(h, sd[f"{layer}.self_attn.q_proj.weight"]).view(b, s, heads, nope + rope).transpose(1, 2)
        q_nope, q_pe = q.split([nope, rope], dim=-1)
        latent, k_pe = F.linear(h, sd[f"{layer}.self_attn.kv_a_proj_with_mqa.weight"]).split([rank, rope], dim=-1)
        latent = _rms_norm(sd[f"{layer}.self_attn.kv_a_layernorm.weight"], latent, 1e-6)  # its own eps, not rms_norm_eps
        kv = F.linear(latent, sd[f"{layer}.self_attn.kv_b_proj.weight"])
        k_nope, value = kv.view(b, s, heads, nope + vd).transpose(1, 2).split([nope, vd], dim=-1)
        q_pe = _interleaved_rope(q_pe, cos, sin)
        k_pe = _interleaved_rope(k_pe.view(b, s, 1, rope).transpose(1, 2), cos, sin).expand(b, heads, s, rope)
        query, key = torch.cat([q_nope, q_pe], -1), torch.cat([k_nope, k_pe], -1)
        weights = (query @ key.transpose(-1, -2) / math.sqrt(nope + rope) + causal).softmax(-1)
        attn = (weights @ value).transpose(1, 2).reshape(b, s, heads * vd)
        x = x + F.linear(attn, sd[f"{layer}.self_attn.o_proj.weight"])
        h = _rms_norm(sd[f"{layer}.post_attention_layernorm.weight"], x, eps)
        x = x + (_swiglu(sd, f"{layer}.mlp", h) if i < t["first_k_dense_replace"] else _moe(sd, f"{layer}.mlp", t, h))
    return F.linear(_rms_norm(sd[f"{lm}.norm.weight"], x, eps), sd["language_model.lm_head.weight"])
