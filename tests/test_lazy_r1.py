"""Lazy R1 (StyleGAN2): R1 times the interval on every interval-th D step, through D's augmentation."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from liver_gan.augment import Augment, AugmentParams
from liver_gan.augment_schema import AugmentOp
from liver_gan.errors import LiverGanError
from liver_gan.loss_schema import LossConfig, LossName
from liver_gan.losses import discriminator_loss, lazy_r1_penalty
from liver_gan.models.schema import Conditioning
from liver_gan.models.stylegan2 import build_stylegan2

GAMMA = 0.5


def tiny_discriminator() -> nn.Module:
    torch.manual_seed(0)
    return build_stylegan2(8, True, Conditioning.projection, 16, 2, 0.01, 128, 16, 4, 16, 2)[1]


def plain_r1(discriminator: nn.Module, real: Tensor, fake: Tensor, labels: Tensor) -> Tensor:
    """The R1 term of the every-step nonsaturating loss: its value with gamma minus its value without."""
    with_r1, _, _ = discriminator_loss(LossConfig(LossName.nonsaturating, GAMMA), discriminator, real, fake, labels)
    without, _, _ = discriminator_loss(LossConfig(LossName.nonsaturating, 0.0), discriminator, real, fake, labels)
    return with_r1 - without


def test_lazy_r1_is_interval_times_r1_on_its_steps_and_absent_between() -> None:
    # float64: the R1 term is a small difference of two losses.
    discriminator = tiny_discriminator().double()
    real, fake = (torch.rand(2, 4, 1, 16, 16, dtype=torch.float64) * 2 - 1).unbind()
    labels = torch.tensor([0, 1, 1, 0])
    expected = plain_r1(discriminator, real, fake, labels).detach()
    assert expected > 0

    penalties = {step: lazy_r1_penalty(discriminator, real, labels, GAMMA, step) for step in range(33)}
    assert [step for step, penalty in penalties.items() if penalty is not None] == [0, 16, 32]
    torch.testing.assert_close(penalties[16].detach(), 16 * expected, rtol=1e-9, atol=0)
    assert lazy_r1_penalty(discriminator, real, labels, GAMMA, 3, interval=1) is not None
    with pytest.raises(LiverGanError, match="interval"):
        lazy_r1_penalty(discriminator, real, labels, GAMMA, 0, interval=0)


def test_r1_is_taken_before_the_augmentation() -> None:
    """D(x) = <w, x> with sum(w) = 0 after a contrast change c: grad_x = c w, so R1 = mean c^2 ||w||^2."""
    weight = torch.randn(16)
    weight -= weight.mean()

    def linear_critic(images: Tensor, labels: Tensor | None) -> Tensor:
        return images.flatten(1) @ weight

    augment = Augment([AugmentOp.intensity])
    images = torch.rand(3, 1, 4, 4)
    contrast = torch.tensor([0.8, 1.0, 1.2])
    params = AugmentParams(
        brightness=torch.tensor([0.1, -0.2, 0.0]),
        contrast=contrast,
        flip=torch.zeros(3, dtype=torch.bool),
        shift=torch.zeros(3, 2, dtype=torch.long),
        keep=torch.ones(3, 1, 4, 4, dtype=torch.bool),
    )
    penalty = lazy_r1_penalty(
        linear_critic, images, None, GAMMA, 0, interval=1, augment=lambda x: augment.apply(x, params)
    )
    expected = GAMMA / 2 * (contrast.square() * weight.square().sum()).mean()
    torch.testing.assert_close(penalty, expected)


def test_r1_trains_d_through_diffaugment() -> None:
    """The double backward runs through every augmentation op and D, and reaches D's weights."""
    discriminator = tiny_discriminator()
    real, labels = torch.rand(4, 1, 16, 16) * 2 - 1, torch.tensor([0, 1, 1, 0])
    augment = Augment(list(AugmentOp), generator=torch.Generator().manual_seed(0))

    penalty = lazy_r1_penalty(discriminator, real, labels, GAMMA, 16, augment=augment)
    penalty.backward()
    plain = lazy_r1_penalty(discriminator, real, labels, GAMMA, 16)
    assert torch.isfinite(penalty) and penalty > 0
    assert not torch.allclose(penalty, plain), "the augmentation is in the penalty's path"
    # Every weight shapes D's input gradient (the last bias only shifts the logit).
    for name, parameter in discriminator.named_parameters():
        if name.endswith("weight"):
            assert torch.isfinite(parameter.grad).all() and parameter.grad.abs().sum() > 0, name
