"""One training step of a diffusion model (``liver_gan/models/ddpm.py``): the denoising loss and its update.

For a real batch x_0 in [-1, 1]: draw a timestep t uniformly from the training schedule and noise
eps ~ N(0, I) per image, noise the batch as MONAI's ``scheduler.add_noise`` does,
x_t = sqrt(a_t) x_0 + sqrt(1 - a_t) eps with a_t = ``alphas_cumprod[t]``, and regress the network's
output on eps (``prediction=epsilon``) or on v = sqrt(a_t) eps - sqrt(1 - a_t) x_0
(``prediction=v``, MONAI's ``scheduler.get_velocity``) by mean squared error.  A conditional model
first sees a ``label_dropout`` fraction of its labels replaced by the null class, which
classifier-free guidance needs at sampling time.

Random draws, per sample and in this order: timesteps, noise, then the label-dropout mask.  They
come from ``noise`` (``training/batch_noise.py``): in the training loop the step's, drawn per sample
of the global batch; without one, seeded from torch's global RNG.

The run around the step (data, logging, checkpoints, evaluation) is the shared loop's
(``liver_gan/training/loop.py``); :class:`Diffusion` is this family's part of it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import Tensor, nn

from liver_gan.errors import LiverGanError
from liver_gan.models.ddpm import DiffusionModel
from liver_gan.models.registry import build_diffusion
from liver_gan.models.schema import Prediction
from liver_gan.training.batch_noise import BatchNoise
from liver_gan.training.optim import build_optimizer
from liver_gan.training.stateless import Stateless

LOGGED_SCALARS = ("loss/diffusion",)


def drop_labels(labels: Tensor, null_class: int, probability: float, noise: BatchNoise) -> Tensor:
    """``labels`` with each one replaced by ``null_class`` with ``probability``."""
    return labels.masked_fill(noise.rand() < probability, null_class)


def diffusion_loss(
    model: DiffusionModel, images: Tensor, labels: Tensor | None, batch_noise: BatchNoise | None = None
) -> Tensor:
    """The float32 MSE between the network's output and its epsilon or v target on one batch."""
    scheduler = model.scheduler
    batch_noise = BatchNoise.of_batch(len(images), images.device) if batch_noise is None else batch_noise
    timesteps = batch_noise.randint(scheduler.num_train_timesteps)
    noise = batch_noise.randn(*images.shape[1:], dtype=images.dtype)
    if labels is not None:
        labels = drop_labels(labels, model.null_class, model.label_dropout, batch_noise)
    noisy = scheduler.add_noise(images, noise, timesteps)
    target = noise if model.prediction is Prediction.epsilon else scheduler.get_velocity(images, noise, timesteps)
    return F.mse_loss(model.denoise(noisy, timesteps, labels).float(), target.float())


def train_step(
    model: DiffusionModel,
    optimizer: torch.optim.Optimizer,
    real: Tensor,
    labels: Tensor | None,
    autocast: torch.autocast,
    noise: BatchNoise | None = None,
) -> Tensor:
    """One optimizer step on one batch; returns the logged scalars (``LOGGED_SCALARS``) as one device tensor."""
    with autocast:
        loss = diffusion_loss(model, real, labels, noise)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()[None]


@dataclass
class Diffusion(Stateless):
    """A diffusion model being trained, with its optimizer (:class:`liver_gan.training.family.Family`).

    ``generator`` is the model itself: it samples like a GAN's generator (``models/ddpm.py``).
    """

    generator: DiffusionModel
    optimizer: torch.optim.Optimizer
    logged_scalars: tuple[str, ...] = LOGGED_SCALARS

    def networks(self) -> dict[str, nn.Module]:
        return {"generator": self.generator}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"optimizer": self.optimizer}

    def learning_rates(self) -> dict[str, float]:
        return {"lr": self.optimizer.param_groups[0]["lr"]}

    def step(
        self, real: Tensor, labels: Tensor | None, autocast: torch.autocast, noise: BatchNoise | None = None
    ) -> Tensor:
        return train_step(self.generator, self.optimizer, real, labels, autocast, noise)


def check_options(cfg: DictConfig) -> None:
    """Options of the GAN groups that mean nothing here and would be silently ignored."""
    if cfg.loss is not None:
        raise LiverGanError(
            f"loss={cfg.loss.name.value} is a GAN's loss and model=ddpm has none (it learns by denoising); "
            "drop the loss override"
        )
    if cfg.optimizer.d_lr is not None:
        raise LiverGanError(
            f"optimizer.d_lr={cfg.optimizer.d_lr} is a discriminator's learning rate and model=ddpm has none; "
            "set optimizer.lr and leave optimizer.d_lr=null"
        )
    if cfg.augment.ops:
        raise LiverGanError(
            f"augment={'/'.join(str(op.value) for op in cfg.augment.ops)} transforms a discriminator's inputs "
            "and model=ddpm has none; use augment=none"
        )


def build_training(cfg: DictConfig, device: torch.device) -> Diffusion:
    """``cfg``'s diffusion model on ``device``, with its optimizer; a bad U-Net option fails here."""
    model = build_diffusion(cfg).to(device)
    return Diffusion(model, build_optimizer(cfg.optimizer, model, cfg.optimizer.lr, device))
