"""The generator's EMA: the update by hand, the half-life in images, copied buffers, checkpoints."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from liver_gan.errors import LiverGanError
from liver_gan.training.ema import GeneratorEMA, ema_beta


def tiny_generator() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))


def test_one_update_by_hand() -> None:
    generator = tiny_generator()
    ema = GeneratorEMA(generator, ema_kimg=0.004)  # a half-life of 4 images
    before = generator[0].weight.detach().clone()
    with torch.no_grad():
        generator[0].weight.add_(1.0)
    generator(torch.randn(5, 2))  # moves BatchNorm's running statistics

    ema.update(generator, batch_size=2)

    beta = 0.5 ** (2 / 4)
    torch.testing.assert_close(ema.module[0].weight, beta * before + (1 - beta) * (before + 1))
    torch.testing.assert_close(ema.module[1].running_mean, generator[1].running_mean, rtol=0, atol=0)
    assert ema.module[1].num_batches_tracked == 1


@pytest.mark.parametrize("batch_size", [1, 2, 5, 10])
def test_half_life_is_ema_kimg_thousand_images_whatever_the_batch(batch_size: int) -> None:
    generator = tiny_generator()
    ema = GeneratorEMA(generator, ema_kimg=0.01)
    start = generator[0].bias.detach().clone()
    with torch.no_grad():
        generator[0].bias.add_(2.0)
    for _ in range(10 // batch_size):
        ema.update(generator, batch_size)
    torch.testing.assert_close(ema.module[0].bias, start + 1.0)  # half of the way after 10 images
    assert ema_beta(64, 10) == pytest.approx(0.5 ** (64 / 10_000))


def test_the_copy_is_frozen_separate_and_checkpointable() -> None:
    generator = tiny_generator()
    ema = GeneratorEMA(generator, ema_kimg=1.0)
    assert not ema.module.training
    assert not any(parameter.requires_grad for parameter in ema.module.parameters())
    with torch.no_grad():
        generator[0].weight.zero_()
    assert ema.module[0].weight.abs().sum() > 0, "the copy owns its weights"

    ema.update(generator, batch_size=64)
    restored = GeneratorEMA(tiny_generator(), ema_kimg=1.0)
    restored.load_state_dict(ema.state_dict())
    torch.testing.assert_close(restored.module.state_dict(), ema.module.state_dict(), rtol=0, atol=0)


def test_bad_half_life_names_the_option() -> None:
    with pytest.raises(LiverGanError, match="trainer.ema_kimg"):
        GeneratorEMA(tiny_generator(), ema_kimg=0)


def test_rampup_caps_the_half_life_at_a_fraction_of_the_images_seen() -> None:
    """stylegan2-ada's ema_rampup: a plain copy at the first step, the capped half-life early on,
    ema_kimg once enough images have been seen."""
    assert ema_beta(32, 10.0, rampup=0.05, images_seen=0) == 0.0
    assert ema_beta(32, 10.0, rampup=0.05, images_seen=3200) == pytest.approx(0.5 ** (32 / 160))
    assert ema_beta(32, 10.0, rampup=0.05, images_seen=10**7) == ema_beta(32, 10.0)
