"""Which position of the language model's input is text, image, video, audio, ... (torch only).

A ``PositionClasses`` map covers exactly the sequence the language model sees at prefill (after
the processor expanded placeholders, after pruning or replication), one class index per position,
-1 for padding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import torch

from lmms_textdom.core.stats import TEXT, check_classes

PAD = -1


@dataclass(frozen=True, eq=False)
class PositionClasses:
    names: tuple[str, ...]
    ids: torch.Tensor  # (batch, seq) long: index into names, PAD for padding

    def __post_init__(self) -> None:
        names = check_classes(self.names)
        ids = self.ids
        if not isinstance(ids, torch.Tensor) or ids.dim() != 2:
            raise ValueError("PositionClasses.ids must be a 2-D (batch, sequence) tensor")
        ids = ids.long()
        if ids.numel() and (int(ids.min()) < PAD or int(ids.max()) >= len(names)):
            raise ValueError(f"class ids must lie in [-1, {len(names) - 1}] for classes {list(names)}")
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "ids", ids)

    @property
    def batch_size(self) -> int:
        return self.ids.shape[0]

    @property
    def length(self) -> int:
        return self.ids.shape[1]

    def counts(self) -> list[tuple[int, ...]]:
        """Positions per class, per sample (padding excluded)."""
        per_class = torch.stack([(self.ids == c).sum(1) for c in range(len(self.names))], dim=1)
        return [tuple(int(v) for v in row) for row in per_class.tolist()]

    def one_hot(self, device: torch.device) -> torch.Tensor:
        """(batch, seq, classes) float32 indicator; padding rows are all zero."""
        ids = self.ids.to(device)
        out = torch.zeros(*ids.shape, len(self.names), dtype=torch.float32, device=device)
        keep = ids != PAD
        out[keep, ids[keep]] = 1.0
        return out


def classify_tokens(
    input_ids: torch.Tensor,
    token_classes: Mapping[str, int | Sequence[int]],
    attention_mask: torch.Tensor | None = None,
) -> PositionClasses:
    """Map positions to classes by token id: ``{"image": image_token_id}``; all other tokens are text.

    Positions where ``attention_mask`` is 0 become padding.
    """
    names = check_classes((TEXT, *token_classes))
    ids = torch.zeros_like(input_ids, dtype=torch.long)
    for index, name in enumerate(names[1:], start=1):
        tokens = token_classes[name]
        tokens = [tokens] if isinstance(tokens, int) else list(tokens)
        ids[torch.isin(input_ids, torch.tensor(tokens, device=input_ids.device))] = index
    if attention_mask is not None:
        if attention_mask.shape != input_ids.shape:
            raise ValueError(f"attention_mask shape {tuple(attention_mask.shape)} != input_ids shape {tuple(input_ids.shape)}")
        ids[attention_mask == 0] = PAD
    return PositionClasses(names, ids)


def mark_text_subclass(classes: PositionClasses, where: torch.Tensor, name: str) -> PositionClasses:
    """``classes`` with the text positions in ``where`` moved to the text sub-class ``name`` (``text:<name>``).

    Metrics still count them as text (``SampleStats``); the record keeps their counts and masses apart.
    Non-text and padding positions are left as they are.
    """
    names = check_classes((*classes.names, name))
    if not name.startswith(TEXT + ":"):
        raise ValueError(f"a text sub-class is named {TEXT}:<name>, got {name!r}")
    ids = classes.ids.clone()
    ids[(ids == 0) & where.to(ids.device)] = len(names) - 1
    return PositionClasses(names, ids)
