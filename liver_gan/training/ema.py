"""An exponential moving average of the generator's weights (Karras et al. 2018; stylegan2-ada's meaning).

The averaged copy draws visibly better samples than the generator being trained, whose weights
jitter from step to step.  ``ema_kimg`` is the half-life in thousands of images: after each
step of ``batch_size`` images the copy moves a fraction 1 - beta toward the trained weights,
with beta = 0.5 ** (batch_size / (ema_kimg * 1000)), so that the weight of any past value
halves every ``ema_kimg`` thousand images, whatever the batch size.  Buffers (BatchNorm's
running statistics, StyleGAN2's fixed noise) are copied, not averaged.

With ``ema_rampup`` (stylegan2-ada's, 0.05 there) the half-life is at most that fraction of the
images seen so far: a short run, or the fast start of a long one, is averaged over its recent
steps instead of staying close to the first, untrained weights.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from liver_gan.errors import LiverGanError


def ema_beta(batch_size: int, ema_kimg: float, rampup: float | None = None, images_seen: int = 0) -> float:
    """The decay per step of ``batch_size`` images for a half-life of ``ema_kimg`` thousand images,
    capped at ``rampup * images_seen`` images when ``rampup`` is set (0 at the first step: a copy)."""
    half_life = ema_kimg * 1000
    if rampup is not None:
        half_life = min(half_life, images_seen * rampup)
    return 0.5 ** (batch_size / half_life) if half_life > 0 else 0.0


class GeneratorEMA:
    """Holds ``module``, a frozen eval-mode copy of the generator, and moves it toward the generator."""

    def __init__(self, generator: nn.Module, ema_kimg: float, rampup: float | None = None) -> None:
        if ema_kimg <= 0:
            raise LiverGanError(
                f"trainer.ema_kimg={ema_kimg} must be positive (stylegan2-ada uses 10), or null for no EMA"
            )
        if rampup is not None and rampup <= 0:
            raise LiverGanError(
                f"trainer.ema_rampup={rampup} must be positive (stylegan2-ada uses 0.05), or null for none"
            )
        self.ema_kimg = ema_kimg
        self.rampup = rampup
        self.module = copy.deepcopy(generator).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, generator: nn.Module, batch_size: int, images_seen: int = 0) -> None:
        """One step after G's optimizer step on ``batch_size`` images, ``images_seen`` before it."""
        beta = ema_beta(batch_size, self.ema_kimg, self.rampup, images_seen)
        parameters = dict(generator.named_parameters())
        for name, average in self.module.named_parameters():
            average.lerp_(parameters[name].detach(), 1 - beta)
        buffers = dict(generator.named_buffers())
        for name, buffer in self.module.named_buffers():
            buffer.copy_(buffers[name])

    def state_dict(self) -> dict[str, Any]:
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state)
