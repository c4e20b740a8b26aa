"""GAN losses on discriminator logits, chosen by ``loss.name``.

- ``bce``: the thesis.  D minimises BCE(D(x), 1) + BCE(D(G(z)), 0) and G minimises
  BCE(D(G(z)), 1), computed from logits: mathematically the same BCE, but finite where a
  separate sigmoid would round to exactly 0 or 1.
- ``nonsaturating``: the same logistic loss in softplus form, plus the R1 penalty
  gamma/2 * E||grad_x D(x)||^2 on real images (Mescheder et al. 2018) when gamma > 0.
- ``hinge``: D minimises E[relu(1 - D(x))] + E[relu(1 + D(G(z)))], G minimises -E[D(G(z))].
- ``wgan_gp``: the critic minimises E[D(G(z))] - E[D(x)] + lambda * E(||grad D(x_hat)|| - 1)^2 on
  random interpolates x_hat of real and fake (Gulrajani et al. 2017), G minimises -E[D(G(z))].

``loss.gradient_penalty`` is gamma for ``nonsaturating`` and lambda for ``wgan_gp``.

:func:`lazy_r1_penalty` is StyleGAN2's lazy R1: the same penalty on every 16th D step only, scaled
by 16, through D's input augmentation when there is one.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from liver_gan.augment import Augment
from liver_gan.errors import LiverGanError
from liver_gan.loss_schema import LossConfig, LossName
from liver_gan.models.stylegan2 import MinibatchStdDev

PENALISED_LOSSES = (LossName.nonsaturating, LossName.wgan_gp)
# Layers whose output for one image depends on the rest of the batch (BatchNorm in training mode).
BATCH_STATISTICS_LAYERS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, MinibatchStdDev)
# StyleGAN2 computes R1 once every 16 D steps: the penalty's gradient changes slowly, and the
# double backward costs about as much as the rest of the D step.
LAZY_R1_INTERVAL = 16


def discriminator_loss(
    cfg: LossConfig,
    discriminator: nn.Module,
    real: Tensor,
    fake: Tensor,
    labels: Tensor | None,
    augment: Augment | None = None,
    r1: bool = True,
) -> tuple[Tensor, Tensor, Tensor]:
    """D's loss, gradient penalty included, with the (detached) logits on real and fake images.

    ``fake`` must already be detached from G.  In a conditional model it is generated from the
    same ``labels`` as the real batch, so one label tensor serves both.  ``augment`` transforms
    both batches before D with one draw of its ops; R1's gradient is then taken with respect to
    the real images before augmentation, as stylegan2-ada does.  ``r1=False`` leaves R1 out (lazy
    R1 adds it on its own steps: :func:`lazy_r1_penalty`).
    """
    name = LossName(cfg.name)
    weight = check_loss_options(cfg)
    # Under bf16 autocast the fake batch is bf16 and the real one fp32; D casts both back to bf16.
    fake = fake.to(real.dtype)
    with_r1 = name is LossName.nonsaturating and weight > 0 and r1
    if with_r1:
        real = real.detach().requires_grad_(True)
    seen_real, seen_fake = (real, fake) if augment is None else augment.pair(real, fake)
    real_logits, fake_logits = _real_and_fake_logits(discriminator, seen_real, seen_fake, labels)
    loss = _discriminator_terms(name, real_logits.float(), fake_logits.float())
    if with_r1:
        loss = loss + weight / 2 * _input_gradients(real_logits, real).square().sum(dim=1).mean()
    elif name is LossName.wgan_gp and weight > 0:
        loss = loss + weight * _interpolate_penalty(discriminator, seen_real, seen_fake, labels)
    return loss, real_logits.detach(), fake_logits.detach()


def _real_and_fake_logits(
    discriminator: nn.Module, real: Tensor, fake: Tensor, labels: Tensor | None
) -> tuple[Tensor, Tensor]:
    """D's logits on the real and on the fake batch.

    A D without batch statistics sees both in one call: the same maths with half the kernel
    launches and GEMMs twice as tall, which is faster where per-op overhead dominates (the
    thesis MLP on a CPU).  BatchNorm normalises each batch by its own statistics, so a D that
    has it gets two calls: a joint batch would mix real and fake statistics.
    """
    if any(isinstance(module, BATCH_STATISTICS_LAYERS) for module in discriminator.modules()):
        return discriminator(real, labels), discriminator(fake, labels)
    joint_labels = None if labels is None else torch.cat([labels, labels])
    logits = discriminator(torch.cat([real, fake]), joint_labels)
    real_logits, fake_logits = logits.split([real.shape[0], fake.shape[0]])
    return real_logits, fake_logits


def generator_loss(cfg: LossConfig, fake_logits: Tensor) -> Tensor:
    """G's loss on D's logits for freshly generated (not detached) images."""
    name = LossName(cfg.name)
    fake_logits = fake_logits.float()  # see _discriminator_terms
    if name is LossName.bce:
        return F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))
    if name is LossName.nonsaturating:
        return F.softplus(-fake_logits).mean()
    return -fake_logits.mean()


def _discriminator_terms(name: LossName, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """D's adversarial loss, without any gradient penalty, from float32 logits.

    Under bf16 autocast D's logits are bf16, and a mean reduced in bf16 keeps 8 bits of mantissa:
    over a batch of 64 the hinge and Wasserstein means would be off in their third digit.
    """
    if name is LossName.bce:
        return F.binary_cross_entropy_with_logits(
            real_logits, torch.ones_like(real_logits)
        ) + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits))
    if name is LossName.nonsaturating:
        return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
    if name is LossName.hinge:
        return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()
    return fake_logits.mean() - real_logits.mean()


def check_loss_options(cfg: LossConfig) -> float:
    """gamma or lambda; a penalty set for a loss that has none would be silently ignored, so refuse it."""
    name = LossName(cfg.name)
    weight = float(cfg.gradient_penalty)
    if weight < 0:
        raise LiverGanError(f"loss.gradient_penalty={weight} is negative: set it to 0 or more")
    if weight > 0 and name not in PENALISED_LOSSES:
        raise LiverGanError(
            f"loss.gradient_penalty={weight} has no effect with loss={name.value}: "
            "set loss.gradient_penalty=0, or use loss=nonsaturating (R1) or loss=wgan_gp"
        )
    interval = int(cfg.r1_interval)
    if interval < 1:
        raise LiverGanError(f"loss.r1_interval={interval} must be at least 1 (1: R1 on every D step; StyleGAN2 uses 16)")
    if interval > 1 and not (name is LossName.nonsaturating and weight > 0):
        raise LiverGanError(
            f"loss.r1_interval={interval} has no effect without R1: use loss=nonsaturating with "
            "loss.gradient_penalty > 0, or set loss.r1_interval=1"
        )
    return weight


def _input_gradients(logits: Tensor, inputs: Tensor) -> Tensor:
    """d logits / d inputs per sample, flattened to (N, pixels), kept in the graph so D learns from it.

    Each logit depends only on its own image (up to batch statistics: BatchNorm, minibatch stddev), so
    the gradient of the sum gives every sample's own gradient.  A D that ignores its input has zero gradients.
    """
    (gradients,) = torch.autograd.grad(
        logits.sum(), inputs, create_graph=True, materialize_grads=True
    )
    return gradients.flatten(start_dim=1)


def r1_penalty(
    discriminator: nn.Module,
    real: Tensor,
    labels: Tensor | None,
    augment: Callable[[Tensor], Tensor] | None = None,
) -> Tensor:
    """E||grad_x D(augment(x))||^2 over the real batch, in the graph so that D learns from it.

    The gradient is taken with respect to the images before augmentation, as stylegan2-ada does,
    so the augmentation must have a second derivative (liver_gan.augment's ops do).
    """
    real = real.detach().requires_grad_(True)
    logits = discriminator(real if augment is None else augment(real), labels)
    return _input_gradients(logits, real).square().sum(dim=1).mean()


def lazy_r1_penalty(
    discriminator: nn.Module,
    real: Tensor,
    labels: Tensor | None,
    gamma: float,
    d_step: int,
    interval: int = LAZY_R1_INTERVAL,
    augment: Callable[[Tensor], Tensor] | None = None,
) -> Tensor | None:
    """gamma / 2 * interval * :func:`r1_penalty` on every ``interval``-th D step (``d_step`` 0, 16, ...), else None.

    Scaling by the interval keeps the penalty's average strength that of R1 on every step
    (Karras et al. 2020, lazy regularization); the caller adds it to D's loss on those steps.
    """
    if interval < 1:
        raise LiverGanError(
            f"the R1 interval must be at least 1, got {interval}: StyleGAN2 uses {LAZY_R1_INTERVAL}"
        )
    if d_step % interval:
        return None
    return gamma / 2 * interval * r1_penalty(discriminator, real, labels, augment)


def _interpolate_penalty(
    discriminator: nn.Module, real: Tensor, fake: Tensor, labels: Tensor | None
) -> Tensor:
    """E(||grad D(x_hat)|| - 1)^2 on x_hat = eps * real + (1 - eps) * fake, eps ~ U(0, 1) per image."""
    eps = torch.rand(real.shape[0], *([1] * (real.dim() - 1)), device=real.device, dtype=real.dtype)
    interpolates = torch.lerp(fake.detach(), real.detach(), eps).requires_grad_(True)
    gradients = _input_gradients(discriminator(interpolates, labels), interpolates)
    return (gradients.norm(dim=1) - 1).square().mean()
