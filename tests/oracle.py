"""Independent reference: per-class attention sums from transformers' eager ``output_attentions``."""

from __future__ import annotations

import copy

import numpy as np
import torch


def eager_class_masses(model, inputs: dict, class_ids: torch.Tensor, num_classes: int, lengths, max_new_tokens: int):
    """Returns (sequences, [per-sample (layers, classes + 1) array]) from an eager copy of ``model``.

    Column ``num_classes`` holds the mass on generated positions; padding (class -1) is in no column.
    The per-row masses of ``eager_row_masses``, summed over the sample's rows.
    """
    sequences, rows = eager_row_masses(model, inputs, class_ids, num_classes, lengths, max_new_tokens)
    return sequences, [masses.sum(axis=0) for masses in rows]


def eager_received_scores(tower, pixel_values: torch.Tensor, grid_thw: torch.Tensor) -> list[torch.Tensor]:
    """Qwen2.5-VL merged-token scores from an eager copy of the tower's own attention weights.

    The last full-attention block's weights are taken from the model file's eager attention
    function; the window order is recovered by matching the first block's input rows against the
    patch embeddings (no window-index code involved). Per merged token (raster order, split per
    grid row): weights averaged over heads, summed over queries, averaged over its 4 patches.
    """
    import sys

    eager = copy.deepcopy(tower)
    eager.set_attn_implementation("eager")
    module = sys.modules[type(eager.blocks[0].attn).__module__]
    target = eager.blocks[max(eager.fullatt_block_indexes)].attn
    original, weights, seen = module.eager_attention_forward, [], {}

    def spy(attention, *args, **kwargs):
        output = original(attention, *args, **kwargs)
        if attention is target:
            weights.append(output[1])  # (1, heads, n, n) for one cu_seqlens segment
        return output

    hooks = [
        eager.patch_embed.register_forward_hook(lambda m, a, out: seen.__setitem__("raster", out)),
        eager.blocks[0].register_forward_pre_hook(lambda m, a: seen.__setitem__("window", a[0])),
    ]
    module.eager_attention_forward = spy
    try:
        with torch.no_grad():
            eager(pixel_values, grid_thw=grid_thw)
    finally:
        module.eager_attention_forward = original
        for hook in hooks:
            hook.remove()
    received_window = torch.cat([w[0].double().mean(0).sum(0) for w in weights])
    match = (seen["window"][:, None, :] == seen["raster"][None, :, :]).all(-1)
    assert (match.sum(1) == 1).all(), "patch embeddings must be distinct to recover the window order"
    raster_of_window = match.double().argmax(1)
    assert not torch.equal(raster_of_window, torch.arange(len(raster_of_window))), "windows must reorder something"
    received = torch.empty_like(received_window)
    received[raster_of_window] = received_window
    merged = received.view(-1, 4).mean(-1)
    return list(merged.split((grid_thw.prod(-1) // 4).tolist()))


def paper_values(masses: np.ndarray, n_text: int, n_image: int) -> dict[str, float]:
    """MDI / AEI from (layers, [text, image, ...]) masses, written out from the paper's formulas."""
    out = {}
    layers = masses.shape[0]
    for group, idx in {"early": [0, 1], "middle": [layers // 2 - 1, layers // 2], "late": [layers - 2, layers - 1]}.items():
        a_t, a_o = masses[idx, 0].sum(), masses[idx, 1].sum()
        a_t, a_o = a_t / (a_t + a_o), a_o / (a_t + a_o)
        out[f"mdi_{group}"] = (a_t / n_text) / (a_o / n_image)
        out[f"aei_{group}"] = a_t / (n_text / (n_text + n_image))
    return out


def eager_row_masses(model, inputs: dict, class_ids: torch.Tensor, num_classes: int, lengths, max_new_tokens: int, subclasses=(), **generate_kwargs):
    """Returns (sequences, per sample an (rows, layers, classes + 1 + subclasses) array) from an eager copy
    of ``model``: each output row's mass per class, then on generated positions, then on each (batch, seq)
    bool mask of ``subclasses``. ``generate_kwargs`` go to generate (e.g. a logits processor that forces tokens)."""
    eager = copy.deepcopy(model)
    eager.set_attn_implementation("eager")
    out = eager.generate(
        **inputs, max_new_tokens=max_new_tokens, do_sample=False, output_attentions=True, return_dict_in_generate=True,
        **generate_kwargs,
    )
    prompt_len = class_ids.shape[1]
    num_layers = len(out.attentions[0])
    result = []
    for b, n in enumerate(lengths):
        masses = np.zeros((n, num_layers, num_classes + 1 + len(subclasses)))
        for t, step in enumerate(out.attentions[:n]):
            for layer, attn in enumerate(step):
                row = attn[b, :, -1, :].double().sum(0)  # the row producing the next token, summed over heads
                # A sliding-window layer's row covers only the latest keys: right-align it to this position.
                padded = torch.cat([row.new_zeros(prompt_len + t - row.shape[0]), row])
                for c in range(num_classes):
                    masses[t, layer, c] = padded[:prompt_len][class_ids[b] == c].sum().item()
                masses[t, layer, num_classes] = padded[prompt_len:].sum().item()
                for j, mask in enumerate(subclasses):
                    masses[t, layer, num_classes + 1 + j] = padded[:prompt_len][mask[b]].sum().item()
        result.append(masses)
    return out.sequences, result


def eager_position_rows(model, inputs: dict, prompt_len: int, lengths, max_new_tokens: int):
    """Returns (sequences, per sample an (rows, layers, prompt_len) array): the attention each prompt
    position received from each of the sample's first ``lengths[b]`` output rows, summed over heads,
    from an eager copy of ``model`` (transformers' ``output_attentions``)."""
    eager = copy.deepcopy(model)
    eager.set_attn_implementation("eager")
    out = eager.generate(
        **inputs, max_new_tokens=max_new_tokens, do_sample=False, output_attentions=True, return_dict_in_generate=True
    )
    num_layers = len(out.attentions[0])
    result = []
    for b, n in enumerate(lengths):
        rows = np.zeros((n, num_layers, prompt_len))
        for t, step in enumerate(out.attentions[:n]):
            for layer, attn in enumerate(step):
                row = attn[b, :, -1, :].double().sum(0)
                padded = torch.cat([row.new_zeros(prompt_len + t - row.shape[0]), row])  # sliding windows: right-aligned
                rows[t, layer] = padded[:prompt_len].numpy()
        result.append(rows)
    return out.sequences, result
