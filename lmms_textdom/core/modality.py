"""Which position of the language model's input is text, image, video, audio, ... (torch only).

A ``PositionClasses`` map covers exactly the sequence the language model sees at prefill (after
the processor expanded placeholders, after pruning or replication), one class index per position,
-1 for padding.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Mapping, Sequence

import torch

from lmms_textdom.core.stats import TEXT, check_classes

PAD = -1


@dataclass(frozen=True, eq=False)
class PositionClasses:
    names: tuple[str, ...]
    ids: torch.Tensor  # (batch, seq) long: index into names, PAD for padding
    #: optional named subsets of the text positions, each a (batch, seq) bool mask (e.g. numbers
    #: written as text); the probe records their mass apart, the headline metrics ignore them
    subclasses: Mapping[str, torch.Tensor] = field(default_factory=dict)
    #: optional, set where non-text items were pruned or replicated (``editing/sequence.py``): per
    #: position, (batch, seq) long, the number of its item among the sample's items of its class and its
    #: index in that item as the processor laid it out; -1 on text and padding. None: nothing was
    #: edited, each item's positions are its layout in order (attention maps place positions by these)
    item_index: torch.Tensor | None = None
    item_offset: torch.Tensor | None = None

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
        subclasses = {}
        for name, mask in self.subclasses.items():
            if name in names or not isinstance(mask, torch.Tensor) or mask.shape != ids.shape:
                raise ValueError(f"subclass {name!r} must be a new name with a {tuple(ids.shape)} mask")
            mask = mask.to(ids.device).bool()
            if bool((mask & (ids != 0)).any()):
                raise ValueError(f"subclass {name!r} must mark text positions only")
            subclasses[name] = mask
        object.__setattr__(self, "subclasses", subclasses)
        if (self.item_index is None) != (self.item_offset is None):
            raise ValueError("item_index and item_offset come together")
        for name in ("item_index", "item_offset"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, torch.Tensor) or value.shape != ids.shape):
                raise ValueError(f"{name} must be a {tuple(ids.shape)} tensor")

    def with_subclasses(self, subclasses: Mapping[str, torch.Tensor]) -> "PositionClasses":
        """The same map with these text sub-classes instead (item placement kept)."""
        return replace(self, subclasses=subclasses)

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

    def subclass_counts(self) -> list[dict[str, int]]:
        """Positions per text subclass, per sample."""
        return [{name: int(mask[b].sum()) for name, mask in self.subclasses.items()} for b in range(self.batch_size)]

    def subclass_indicator(self, device: torch.device) -> torch.Tensor:
        """(batch, seq, subclasses) float32 indicator, one column per subclass in insertion order."""
        columns = [mask.to(device, torch.float32) for mask in self.subclasses.values()]
        return torch.stack(columns, -1) if columns else torch.zeros(*self.ids.shape, 0, device=device)

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
