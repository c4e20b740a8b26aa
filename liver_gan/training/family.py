"""What differs per model family in a training run: the networks and optimizers, and one step.

The shared loop (``liver_gan/training/loop.py``) runs every family the same way: it draws the
batches, calls :meth:`Family.step`, logs the scalars it returns, samples grids from
``generator`` (or its EMA copy), checkpoints :meth:`Family.networks` and
:meth:`Family.optimizers` under their keys, and evaluates.  A family module provides a
:class:`Family`, ``check_options(cfg)`` (run before anything is built) and
``build_training(cfg, device)``; :func:`family_module` picks it from the model config's schema.

The inpainter (``inpaint_step``) draws from crops with holes instead of noise: its sample grids'
inputs come from :func:`fixed_inputs`, and the loop evaluates it with liver_gan/metrics/inpainting.py.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, Protocol

import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from liver_gan.data.dataset import PreparedDataset
from liver_gan.models.registry import is_gan, is_inpainter
from liver_gan.training import diffusion_step, gan_step, inpaint_step
from liver_gan.training.batch_noise import BatchNoise
from liver_gan.training.state import FixedSamples


class Family(Protocol):
    """One family's part of a training run."""

    generator: nn.Module  # what draws images: a GAN's G, or the diffusion model itself
    logged_scalars: tuple[str, ...]  # the names of the values step() returns

    def networks(self) -> dict[str, nn.Module]:
        """The trained networks by checkpoint key, ``generator`` among them."""

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """The optimizers by checkpoint key."""

    def learning_rates(self) -> dict[str, float]:
        """The current learning rates by TensorBoard tag."""

    def monitored(self) -> dict[str, Tensor]:
        """Settings the family adapts while it trains (ADA's p), by TensorBoard tag, as device scalars."""

    def state_dict(self) -> dict[str, Any]:
        """What a resume needs besides the networks and optimizers (checkpoint key ``family_state``)."""

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s values."""

    def step(
        self, real: Tensor, labels: Tensor | None, autocast: torch.autocast, noise: BatchNoise | None = None
    ) -> Tensor:
        """One training step on a real batch (this rank's shard) with the step's ``noise``; the
        ``logged_scalars`` as one device tensor."""


def family_module(cfg: DictConfig) -> ModuleType:
    """The module of ``cfg.model``'s family: ``gan_step`` (mlp, dcgan, stylegan2), ``diffusion_step``
    (ddpm) or ``inpaint_step`` (inpaint)."""
    if is_inpainter(cfg):
        return inpaint_step
    return gan_step if is_gan(cfg) else diffusion_step


def fixed_inputs(
    cfg: DictConfig, dataset: PreparedDataset, columns: int, device: torch.device
) -> FixedSamples | None:
    """The inpainter's sample-grid inputs (fixed training crops with their holes, ``columns`` to a
    row); None for the families that draw their grids from fixed noise."""
    if not is_inpainter(cfg):
        return None
    count = cfg.trainer.num_fixed_samples
    return inpaint_step.fixed_inputs(dataset.train, count, columns, cfg.model.hole_dilation, device)


def build_family(cfg: DictConfig, device: torch.device) -> Family:
    return family_module(cfg).build_training(cfg, device)
