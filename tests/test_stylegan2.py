"""StyleGAN2: shapes and conditioning at 64/128/256 px, the paper's layers, and how D meets the losses."""

from __future__ import annotations

from typing import Callable

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from omegaconf import DictConfig

from liver_gan.errors import LiverGanError
from liver_gan.loss_schema import LossConfig, LossName
from liver_gan.losses import discriminator_loss
from liver_gan.models.schema import Conditioning
from liver_gan.models.stylegan2 import (
    EqualLinear,
    ModulatedConv2d,
    StyledConv,
    ToRGB,
    build_stylegan2,
    minibatch_stddev,
)

LATENT = 8


def tiny_stylegan2(resolution: int, num_classes: int = 0, conditioning: Conditioning = Conditioning.projection):
    """Channels 16 near 4x4 thinning to 2 at 256 px: the full architecture at a CPU-test size."""
    return build_stylegan2(
        latent_dim=LATENT,
        conditional=num_classes > 0,
        conditioning=conditioning,
        style_dim=16,
        mapping_layers=2,
        mapping_lr_multiplier=0.01,
        channel_base=512,
        channel_max=16,
        mbstd_group_size=4,
        resolution=resolution,
        num_classes=num_classes,
    )


@pytest.mark.parametrize("resolution", [64, 128, 256])
def test_shapes_and_conditioning(resolution: int) -> None:
    torch.manual_seed(0)
    generator, discriminator = tiny_stylegan2(resolution, num_classes=2)
    generator.eval()
    labels = torch.tensor([0, 1])
    z = torch.randn(1, LATENT).expand(2, -1)

    images = generator(z, labels)
    assert images.shape == (2, 1, resolution, resolution)
    assert images.min() >= -1 and images.max() <= 1
    assert not torch.allclose(images[0], images[1]), "the label must change the image for the same z"
    assert (generator.latent_dim, generator.num_classes, generator.resolution) == (LATENT, 2, resolution)

    logits = discriminator(images[:1].expand(2, -1, -1, -1), labels)
    assert logits.shape == (2,)
    assert not torch.allclose(logits[0], logits[1]), "the label must change D's logit for the same image"
    assert (discriminator.num_classes, discriminator.resolution) == (2, resolution)

    # The skip generator has a toRGB at every size from 4 px up; D a residual block per halving to 4 px.
    doublings = resolution.bit_length() - 3
    assert sum(isinstance(module, ToRGB) for module in generator.modules()) == doublings + 1
    assert len(discriminator.blocks) == doublings


def test_unconditional_generator_is_a_function_of_z_in_eval_mode() -> None:
    torch.manual_seed(0)
    generator, discriminator = tiny_stylegan2(64)
    for module in generator.modules():
        if isinstance(module, StyledConv):
            module.noise_strength.data.fill_(0.5)  # untrained strengths are 0: noise would not show
    z = torch.randn(3, LATENT)

    generator.eval()
    torch.testing.assert_close(generator(z), generator(z), rtol=0, atol=0)
    generator.train()
    torch.manual_seed(1)
    first = generator(z)
    torch.manual_seed(1)
    torch.testing.assert_close(generator(z), first, rtol=0, atol=0)  # training noise: the global RNG
    assert not torch.allclose(generator(z), first), "training mode draws fresh noise"
    assert discriminator(first).shape == (3,)
    with pytest.raises(ValueError, match="unconditional"):
        generator(z, torch.tensor([0, 1, 0]))


def test_every_parameter_learns() -> None:
    """No dead path: the constant, every noise strength, every toRGB and the label embeddings get gradients."""
    torch.manual_seed(0)
    generator, discriminator = tiny_stylegan2(64, num_classes=2)
    labels = torch.tensor([0, 1, 1, 0])
    discriminator(generator(torch.randn(4, LATENT), labels), labels).sum().backward()
    for network in (generator, discriminator):
        for name, parameter in network.named_parameters():
            assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def explicit_modulated_conv(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
    """The paper's equations, one sample at a time: w' = w * s, w'' = w' / ||w'|| per output channel."""
    outputs = []
    for sample, style in zip(x, styles):
        modulated = weight * style[None, :, None, None]
        demodulated = modulated / modulated.square().sum(dim=(1, 2, 3), keepdim=True).sqrt()
        outputs.append(F.conv2d(sample[None], demodulated, padding=weight.shape[-1] // 2))
    return torch.cat(outputs)


def test_modulated_convolution_matches_the_paper_in_both_forms() -> None:
    torch.manual_seed(0)
    layer = ModulatedConv2d(5, 4, 3, style_dim=6)
    layer.affine.bias.data.normal_()  # styles other than 1
    x, w = torch.randn(3, 5, 8, 8, requires_grad=True), torch.randn(3, 6)
    expected = explicit_modulated_conv(x, layer.weight * layer.weight_gain, layer.affine(w))

    results = {}
    for training in (True, False):
        layer.train(training)
        output = layer(x, w)
        torch.testing.assert_close(output, expected, rtol=1e-5, atol=1e-5)
        gradients = torch.autograd.grad(output.square().sum(), [x, layer.weight])
        results[training] = gradients
    for grouped, split in zip(results[False], results[True], strict=True):
        torch.testing.assert_close(grouped, split, rtol=1e-4, atol=1e-5)


def test_equalized_lr_multiplier_slows_adam_by_its_factor() -> None:
    """With the same used weights, an Adam step moves the mapping network's weights 100 times less."""
    torch.manual_seed(0)
    # float64: a float32 weight of ~100 would round away part of a 1e-3 step.
    fast, slow = EqualLinear(4, 3).double(), EqualLinear(4, 3, lr_multiplier=0.01).double()
    slow.weight.data = fast.weight.data / 0.01
    used = {layer: layer.weight.detach() * layer.weight_gain for layer in (fast, slow)}
    torch.testing.assert_close(used[fast], used[slow])
    x = torch.randn(5, 4, dtype=torch.float64)
    for layer in (fast, slow):
        # eps=0: Adam's first step is then lr * sign(gradient) for every stored weight.
        optimizer = torch.optim.Adam(layer.parameters(), lr=1e-3, eps=0.0)
        layer(x).square().sum().backward()
        optimizer.step()
    moves = {layer: layer.weight.detach() * layer.weight_gain - used[layer] for layer in (fast, slow)}
    torch.testing.assert_close(moves[slow], moves[fast] * 0.01, rtol=1e-9, atol=0)


def test_mapping_normalises_z() -> None:
    torch.manual_seed(0)
    generator, _ = tiny_stylegan2(64)
    z = torch.randn(2, LATENT)
    torch.testing.assert_close(generator.mapping(3 * z, None), generator.mapping(z, None))
    assert len(generator.mapping.layers) == 2


def test_minibatch_stddev_by_hand() -> None:
    x = torch.tensor([0.0, 1.0, 4.0, 9.0]).reshape(4, 1, 1, 1).expand(4, 1, 2, 2)
    # Groups of 2 pair samples (0, 2) and (1, 3): population deviations 2 and 4.
    out = minibatch_stddev(x, group_size=2)
    assert out.shape == (4, 2, 2, 2)
    torch.testing.assert_close(out[:, 0], x[:, 0])
    torch.testing.assert_close(out[:, 1, 0, 0], torch.tensor([2.0, 4.0, 2.0, 4.0]))
    # Three samples and groups of up to 4: one group of 3, the largest that divides the batch.
    three = minibatch_stddev(x[:3], group_size=4)
    torch.testing.assert_close(three[:, 1, 0, 0], torch.tensor([0.0, 1.0, 4.0]).std(unbiased=False).expand(3))


def test_discriminator_loss_judges_real_and_fake_separately() -> None:
    """Minibatch stddev mixes a batch, so real and fake must not share one D call (losses.py)."""
    torch.manual_seed(0)
    _, discriminator = tiny_stylegan2(64)
    real, fake = torch.rand(4, 1, 64, 64) * 2 - 1, torch.rand(4, 1, 64, 64) - 1
    _, real_logits, fake_logits = discriminator_loss(
        LossConfig(name=LossName.nonsaturating), discriminator, real, fake, None
    )
    torch.testing.assert_close(real_logits, discriminator(real).detach(), rtol=0, atol=0)
    torch.testing.assert_close(fake_logits, discriminator(fake).detach(), rtol=0, atol=0)


def test_concat_conditioning_feeds_label_planes() -> None:
    torch.manual_seed(0)
    _, discriminator = tiny_stylegan2(64, num_classes=2, conditioning=Conditioning.concat)
    assert discriminator.from_rgb.weight.shape[1] == 1 + 2
    assert discriminator.label_conditioning.projection is None
    logits = discriminator(torch.zeros(1, 1, 64, 64).expand(2, -1, -1, -1), torch.tensor([0, 1]))
    assert not torch.allclose(logits[0], logits[1])


def test_model_group_builds_it(compose_config: Callable[..., DictConfig]) -> None:
    cfg = compose_config(["model=stylegan2", "model.conditional=true", "model.channel_base=256", "model.channel_max=8"])
    generator, discriminator = instantiate(cfg.model, resolution=64, num_classes=2)
    labels = torch.tensor([0, 1])
    images = generator(torch.randn(2, cfg.model.latent_dim), labels)
    assert images.shape == (2, 1, 64, 64) and discriminator(images, labels).shape == (2,)


@pytest.mark.parametrize("resolution", [4, 48, 0])
def test_rejects_resolution(resolution: int) -> None:
    with pytest.raises(LiverGanError, match="dataset.resolution"):
        tiny_stylegan2(resolution)


def test_bad_sizes_name_the_option() -> None:
    with pytest.raises(LiverGanError, match="model.channel_max"):
        build_stylegan2(8, False, Conditioning.projection, 16, 2, 0.01, 512, 0, 4, 64, 0)
    with pytest.raises(LiverGanError, match="model.mapping_lr_multiplier"):
        build_stylegan2(8, False, Conditioning.projection, 16, 2, 0.0, 512, 16, 4, 64, 0)
