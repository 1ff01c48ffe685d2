"""Independent reference: per-class attention sums from transformers' eager ``output_attentions``."""

from __future__ import annotations

import copy

import numpy as np
import torch


def eager_class_masses(model, inputs: dict, class_ids: torch.Tensor, num_classes: int, lengths, max_new_tokens: int):
    """Returns (sequences, [per-sample (layers, classes + 1) array]) from an eager copy of ``model``.

    Column ``num_classes`` holds the mass on generated positions; padding (class -1) is in no column.
    """
    eager = copy.deepcopy(model)
    eager.set_attn_implementation("eager")
    out = eager.generate(
        **inputs, max_new_tokens=max_new_tokens, do_sample=False, output_attentions=True, return_dict_in_generate=True
    )
    prompt_len = class_ids.shape[1]
    num_layers = len(out.attentions[0])
    result = []
    for b, n in enumerate(lengths):
        masses = np.zeros((num_layers, num_classes + 1))
        for step in out.attentions[:n]:
            for layer, attn in enumerate(step):
                row = attn[b, :, -1, :].double().sum(0)  # the row producing the next token, summed over heads
                for c in range(num_classes):
                    masses[layer, c] += row[:prompt_len][class_ids[b] == c].sum().item()
                masses[layer, num_classes] += row[prompt_len:].sum().item()
        result.append(masses)
    return out.sequences, result
