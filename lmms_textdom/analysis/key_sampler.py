"""A bounded sample of each position class's key vectors in every language-model layer.

At prefill the probe's attention function hands each layer's key states (after the rotary
embedding: the keys the scores are made of) to ``KeySampler.observe`` (``probe.KEY_OBSERVER``).
Per sample and class at most ``positions`` prompt positions are drawn (seeded by the class and its
size, so a sample's draw does not depend on its batch), in random order so that the first and
second half are two random halves. Their key vectors (all KV heads concatenated, D numbers) are
centred together and projected onto the pooled sample's top ``components`` principal directions;
only those coordinates are kept.

Bound per sample: on the device, one (classes x positions, D) matrix and its SVD per layer, freed
at once; in the sample log, layers x classes x positions x components numbers (default 64 x 4 per
class and layer: 8 KB of numbers per layer for text plus one non-text class).
"""

from __future__ import annotations

import torch

from lmms_textdom.core.modality import PositionClasses
from lmms_textdom.core.probe import KEY_OBSERVER, ProbeError, install, language_model_layers, uninstall

DEFAULT_POSITIONS = 64
COMPONENTS = 4
_DIGITS = 5  # significant digits kept in the sample log


def draw_positions(ids: torch.Tensor, class_index: int, limit: int) -> torch.Tensor:
    """Up to ``limit`` positions of one class in one sample's class row, in seeded random order."""
    found = torch.nonzero(ids == class_index).flatten()
    generator = torch.Generator().manual_seed(1_000_003 * class_index + len(found))
    return found[torch.randperm(len(found), generator=generator)[:limit]]


def principal_coordinates(vectors: torch.Tensor, components: int) -> tuple[torch.Tensor, float]:
    """Coordinates on the top principal directions of the centred rows, and the variance share they hold.

    Signs are fixed (each direction's largest entry positive) so that reruns draw the same picture.
    """
    centred = vectors.double() - vectors.double().mean(0, keepdim=True)
    _, singular, directions = torch.linalg.svd(centred, full_matrices=False)
    directions = directions[:components]
    largest = directions.gather(1, directions.abs().argmax(1, keepdim=True))
    directions = directions * torch.sign(largest)
    variance = singular.square()
    share = float(variance[:components].sum() / variance.sum()) if float(variance.sum()) > 0 else 0.0
    return centred @ directions.T, share


def _rounded(values: torch.Tensor) -> list:
    return [[float(f"{v:.{_DIGITS}g}") for v in row] for row in values.tolist()]


class KeySampler:
    """Context manager that keeps the projected key sample of every layer at prefill, per sample."""

    def __init__(self, model, classes: PositionClasses, positions: int = DEFAULT_POSITIONS, components: int = COMPONENTS):
        if positions < 4:
            raise ValueError(f"key sampling needs at least 4 positions per class (two halves of 2), got {positions}")
        self.model = model
        self.classes = classes
        self.positions = positions
        self.components = components
        self.layer_of = language_model_layers(model)
        self.num_layers = model.config.get_text_config().num_hidden_layers
        self.draws = [
            {name: draw_positions(classes.ids[b], c, positions) for c, name in enumerate(classes.names)}
            for b in range(classes.batch_size)
        ]
        self.records: list[dict[int, dict]] = [{} for _ in range(classes.batch_size)]
        self.dims: int | None = None
        self._installed_here = False

    def __enter__(self) -> "KeySampler":
        self._installed_here = install(self.model)
        for module, layer in self.layer_of.items():
            setattr(module, KEY_OBSERVER, lambda key, layer=layer: self.observe(layer, key))
        return self

    def __exit__(self, *exc) -> None:
        for module in self.layer_of:
            if getattr(module, KEY_OBSERVER, None) is not None:
                delattr(module, KEY_OBSERVER)
        if self._installed_here:
            uninstall(self.model)

    @torch.no_grad()
    def observe(self, layer: int, key: torch.Tensor) -> None:
        if key.shape[2] != self.classes.length or layer in self.records[0]:
            return  # decoding steps (the cache is longer than the prompt), or a layer already seen
        if key.shape[0] != self.classes.batch_size:
            raise ProbeError(f"the key sampler's class map has {self.classes.batch_size} sequences but the model runs {key.shape[0]}")
        self.dims = key.shape[1] * key.shape[3]
        for b, draws in enumerate(self.draws):
            chosen = {name: pos for name, pos in draws.items() if len(pos)}
            if not chosen:
                self.records[b][layer] = {"coords": {}, "explained": None}
                continue
            order = torch.cat(list(chosen.values())).to(key.device)
            vectors = key[b][:, order, :].transpose(0, 1).reshape(len(order), -1).float()
            coords, share = principal_coordinates(vectors, self.components)
            pieces = coords.cpu().split([len(p) for p in chosen.values()])
            self.records[b][layer] = {"coords": {name: _rounded(c) for name, c in zip(chosen, pieces)}, "explained": round(share, 6)}

    def samples(self) -> list[dict]:
        """Per sample: ``{"positions", "components", "dims", "counts", "layers": [{"coords": {class: [[x1..xk], ...]}, "explained"}]}``."""
        missing = sorted(set(range(self.num_layers)) - set(self.records[0]))
        if missing:
            raise ProbeError(f"language-model layers {missing} never passed their keys to the key sampler")
        counts = self.classes.counts()
        return [
            {
                "positions": self.positions,
                "components": self.components,
                "dims": self.dims,
                "counts": dict(zip(self.classes.names, counts[b])),
                "layers": [record[layer] for layer in range(self.num_layers)],
            }
            for b, record in enumerate(self.records)
        ]
