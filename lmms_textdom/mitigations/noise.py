"""The corrupted non-text input v' of visual contrastive decoding (VCD, CVPR 2024).

VCD noises the image tensor the vision tower takes (pixels after the processor's normalisation) by
T steps of forward diffusion: v' = sqrt(abar_T) * v + sqrt(1 - abar_T) * eps, eps ~ N(0, 1), with
abar_T the product of (1 - beta_t) over t <= T and beta_t = sigmoid(linspace(-6, 6, 1000))_t *
(5e-3 - 1e-5) + 1e-5 (its ``vcd_add_noise.py``).

Here the noise is added where each family's non-text encoder takes its input (a forward pre-hook on
the encoder module, ``NoiseSite``), so every route to the features is covered: the encoder run
inside the model's forward, by the adapter itself, or before pruning. Images and video frames get
VCD's noise as is (their normalised pixels have about unit scale). Other inputs (log-mel audio
features, ChatTS's scaled series values, GraphGPT's node features) have scales of their own, so their
noise is eps times the standard deviation of that input's values: the same signal-to-noise ratio as
for unit-scale pixels at the same T.

eps comes from a generator seeded with ``vcd_seed`` once per batch, drawn on the CPU in the order the
encoders run, so a run repeats exactly; a sample's noise depends on the batch it runs in (as the
random draws of sampling do).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator

import torch

from lmms_textdom.mitigations.settings import DIFFUSION_STEPS


def alpha_bar(step: int) -> float:
    """abar at step ``step`` (0 .. 999) of VCD's schedule."""
    betas = torch.sigmoid(torch.linspace(-6, 6, DIFFUSION_STEPS, dtype=torch.float64)) * (0.5e-2 - 1e-5) + 1e-5
    return float(torch.cumprod(1 - betas, dim=0)[step])


@dataclass(frozen=True)
class NoiseSite:
    """A non-text encoder: its input ``argument`` (first positional argument, else that keyword) is noised.

    ``scaled``: the noise is multiplied by the input's own standard deviation (inputs not of unit scale).
    The input may be a tensor or a list of tensors (one per item, e.g. ChatTS's series).
    """

    module: torch.nn.Module
    argument: str
    scaled: bool = False


class Corruption:
    """Forward diffusion of every site's input while ``active()``; one seeded generator per batch."""

    def __init__(self, sites: list[NoiseSite], step: int, seed: int):
        if not sites:
            raise ValueError("no non-text encoder to corrupt")
        self.sites = sites
        a = alpha_bar(step)
        self.keep, self.noise = a**0.5, (1 - a) ** 0.5
        self.generator = torch.Generator().manual_seed(seed)

    def noisy(self, x: torch.Tensor, scaled: bool) -> torch.Tensor:
        eps = torch.randn(x.shape, generator=self.generator, dtype=torch.float32)
        if scaled:
            eps = eps * x.float().std(unbiased=False).cpu()
        return (self.keep * x.float() + self.noise * eps.to(x.device)).to(x.dtype)

    def _hook(self, site: NoiseSite):
        def corrupt(module, args, kwargs):
            if args:
                value, args = args[0], args[1:]
                return (self._apply(value, site.scaled), *args), kwargs
            if site.argument in kwargs:
                return args, {**kwargs, site.argument: self._apply(kwargs[site.argument], site.scaled)}
            raise RuntimeError(f"{type(module).__name__} was called without its {site.argument!r} input")

        return corrupt

    def _apply(self, value, scaled: bool):
        if isinstance(value, torch.Tensor):
            return self.noisy(value, scaled)
        if isinstance(value, (list, tuple)):
            return type(value)(self.noisy(v, scaled) for v in value)
        raise TypeError(f"cannot noise a {type(value).__name__}")

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        handles = [site.module.register_forward_pre_hook(self._hook(site), with_kwargs=True) for site in self.sites]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()
