"""One training step of a GAN (mlp, dcgan, stylegan2), as in PyTorch's DCGAN example:

1. G draws a fake batch from z ~ N(0, I) (the step's ``BatchNoise``), with the real batch's labels
   when conditional;
2. D learns to tell the real batch from the fake one, detached so that D's backward stops at D;
3. G learns to fool the updated D on the *same* fake batch.  G has not changed since it drew the
   batch, so its graph is still exact and a second G forward would be wasted.  D is frozen for
   this backward, so no D weight gradients are computed.  A BatchNorm D thus sees the fake batch
   in train mode twice per step, as in the DCGAN example.

D's inputs go through ``augment`` (the ``augment`` group): in the D step real and fake batches
with one draw of the ops, in the G step the fake batch with a fresh draw, so that G learns through
the augmentation (Zhao et al. 2020).  ``ada`` watches D's logits on the real batch to steer its
probability p.  R1 is taken every ``loss.r1_interval``-th D step, scaled by the interval
(StyleGAN2's lazy regularization), through the augmentation.

Speed (issue 6): gradients are freed, not zeroed; a D without BatchNorm judges the real and the
fake batch in one call (losses.py); the logged scalars stay on the device.

The run around the step (data, logging, checkpoints, evaluation) is the shared loop's
(``liver_gan/training/loop.py``); this module is the GAN family's part of it
(:class:`liver_gan.training.family.Family`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import Tensor, nn

from liver_gan.augment import AdaptiveAugment, Augment
from liver_gan.errors import LiverGanError
from liver_gan.loss_schema import LossName
from liver_gan.losses import check_loss_options, discriminator_loss, generator_loss, lazy_r1_penalty
from liver_gan.models.registry import build_gan
from liver_gan.training.batch_noise import BatchNoise
from liver_gan.training.optim import build_optimizers

# D(x) and D(G(z)) are shown as probabilities, whatever the loss.
LOGGED_SCALARS = ("loss/D", "loss/G", "D(x)", "D(G(z))")


class AdversarialPair:
    """A generator and a discriminator, each with its optimizer: the part of the Family protocol
    that the GAN and the lesion inpainter (training/inpaint_step.py) share."""

    generator: nn.Module
    discriminator: nn.Module
    optimizer_g: torch.optim.Optimizer
    optimizer_d: torch.optim.Optimizer

    def networks(self) -> dict[str, nn.Module]:
        return {"generator": self.generator, "discriminator": self.discriminator}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"optimizer_g": self.optimizer_g, "optimizer_d": self.optimizer_d}

    def learning_rates(self) -> dict[str, float]:
        return {"lr/G": self.optimizer_g.param_groups[0]["lr"], "lr/D": self.optimizer_d.param_groups[0]["lr"]}


@dataclass
class GAN(AdversarialPair):
    """A GAN being trained: both networks, their optimizers and the loss (``cfg.loss``)."""

    generator: nn.Module
    discriminator: nn.Module
    optimizer_g: torch.optim.Optimizer
    optimizer_d: torch.optim.Optimizer
    loss: DictConfig
    augment: Augment = field(default_factory=Augment)
    d_steps: int = 0  # D steps taken, which place lazy R1's steps
    logged_scalars: tuple[str, ...] = LOGGED_SCALARS

    def monitored(self) -> dict[str, Tensor]:
        """ADA's probability p and overfitting measure r_t, for TensorBoard; nothing otherwise."""
        if not isinstance(self.augment, AdaptiveAugment):
            return {}
        return {"augment/p": self.augment.p, "augment/overfitting": self.augment.overfitting}

    def state_dict(self) -> dict[str, Any]:
        """What a resume needs besides networks and optimizers: the augmentation's state, the D step count."""
        return {"augment": self.augment.state_dict(), "d_steps": self.d_steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.augment.load_state_dict(state["augment"])
        self.d_steps = state["d_steps"]

    def step(
        self, real: Tensor, labels: Tensor | None, autocast: torch.autocast, noise: BatchNoise | None = None
    ) -> Tensor:
        return train_step(self, self.loss, real, labels, autocast, noise)


def check_options(cfg: DictConfig) -> None:
    """The GAN options that would fail only after the dataset build."""
    if cfg.loss is None:
        raise LiverGanError(
            f"model._target_={cfg.model._target_} is a GAN and no loss was chosen; add loss=nonsaturating "
            "(or bce, hinge, wgan_gp), or name one in the model's YAML defaults as conf/model/dcgan.yaml does"
        )
    check_loss_options(cfg.loss)


def build_training(cfg: DictConfig, device: torch.device) -> GAN:
    """``cfg``'s GAN on ``device``, with its optimizers and D's augmentation; a bad size fails here."""
    generator, discriminator = build_gan(cfg)
    generator, discriminator = generator.to(device), discriminator.to(device)
    optimizers = build_optimizers(cfg.optimizer, generator, discriminator, device)
    return GAN(generator, discriminator, *optimizers, cfg.loss, build_augment(cfg.augment))


def build_augment(cfg: DictConfig) -> Augment:
    """The ``augment`` group's pipeline; its targets are liver_gan.augment's (validated configs only)."""
    return instantiate(cfg, _convert_="all")


def lazy_r1(gan: GAN, loss_cfg: DictConfig, real: Tensor, labels: Tensor | None) -> Tensor | None:
    """The lazy R1 term of this D step, or None: off, or not one of every ``loss.r1_interval`` steps."""
    if loss_cfg.r1_interval == 1 or LossName(loss_cfg.name) is not LossName.nonsaturating:
        return None
    return lazy_r1_penalty(
        gan.discriminator, real, labels, loss_cfg.gradient_penalty, gan.d_steps, loss_cfg.r1_interval, gan.augment
    )


def train_step(
    gan: GAN,
    loss_cfg: DictConfig,
    real: Tensor,
    labels: Tensor | None,
    autocast: torch.autocast,
    noise: BatchNoise | None = None,
) -> Tensor:
    """One D step and one G step on one batch; returns the logged scalars as one device tensor.

    ``noise`` gives the latent vectors: the training loop's is the step's, drawn per sample of the
    global batch; without one they are seeded from torch's global RNG.
    """
    noise = BatchNoise.of_batch(len(real), real.device) if noise is None else noise
    z = noise.randn(gan.generator.latent_dim)
    with autocast:
        fake = gan.generator(z, labels)
        d_loss, real_logits, fake_logits = discriminator_loss(
            loss_cfg, gan.discriminator, real, fake.detach(), labels, gan.augment, r1=loss_cfg.r1_interval == 1
        )
        penalty = lazy_r1(gan, loss_cfg, real, labels)
    gan.augment.observe(real_logits)
    gan.optimizer_d.zero_grad(set_to_none=True)
    (d_loss if penalty is None else d_loss + penalty).backward()
    gan.optimizer_d.step()
    gan.d_steps += 1

    gan.discriminator.requires_grad_(False)
    with autocast:
        g_loss = generator_loss(loss_cfg, gan.discriminator(gan.augment(fake), labels))
    gan.optimizer_g.zero_grad(set_to_none=True)
    g_loss.backward()
    gan.optimizer_g.step()
    gan.discriminator.requires_grad_(True)
    return torch.stack(
        [d_loss.detach(), g_loss.detach(), real_logits.sigmoid().mean(), fake_logits.sigmoid().mean()]
    ).float()
