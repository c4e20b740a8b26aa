"""The GAN families: Table 2's MLP exactly, DCGAN at 64/128/256, and both conditioning variants."""

from __future__ import annotations

from typing import Callable

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn

from liver_gan.errors import LiverGanError
from liver_gan.models.dcgan import build_dcgan
from liver_gan.models.mlp import build_mlp_gan
from liver_gan.models.schema import Conditioning

Compose = Callable[..., DictConfig]


def build(compose_config: Compose, overrides: list[str], resolution: int, num_classes: int = 0):
    """Build (G, D) the way the training run does: compose the config, then instantiate."""
    cfg = compose_config(overrides)
    return instantiate(cfg.model, resolution=resolution, num_classes=num_classes)


def parameter_count(module: nn.Module) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


TABLE_2_LAYERS = (nn.Linear, nn.ReLU, nn.LeakyReLU, nn.Tanh, nn.Sigmoid, nn.Flatten)


def layer_sequence(module: nn.Module) -> list[type]:
    """The Table 2 kinds of layer, in the order the model registers (and runs) them."""
    return [type(layer) for layer in module.modules() if isinstance(layer, TABLE_2_LAYERS)]


def linear_shapes(module: nn.Module) -> list[tuple[int, int]]:
    linears = [layer for layer in module.modules() if isinstance(layer, nn.Linear)]
    return [(layer.in_features, layer.out_features) for layer in linears]


def test_mlp_is_table_2(compose_config: Compose) -> None:
    generator, discriminator = build(compose_config, ["model=mlp"], resolution=64)

    assert linear_shapes(generator) == [(100, 256), (256, 512), (512, 1024), (1024, 4096)]
    assert linear_shapes(discriminator) == [(4096, 512), (512, 256), (256, 1)]
    g_expected = (100 * 256 + 256) + (256 * 512 + 512) + (512 * 1024 + 1024) + (1024 * 4096 + 4096)
    d_expected = (4096 * 512 + 512) + (512 * 256 + 256) + (256 * 1 + 1)
    assert parameter_count(generator) == g_expected == 4_881_152
    assert parameter_count(discriminator) == d_expected == 2_229_249

    assert layer_sequence(generator) == [nn.Linear, nn.ReLU] * 3 + [nn.Linear, nn.Tanh]
    assert layer_sequence(discriminator) == [nn.Flatten] + [nn.Linear, nn.LeakyReLU] * 2 + [nn.Linear]
    slopes = [layer.negative_slope for layer in discriminator.modules() if isinstance(layer, nn.LeakyReLU)]
    assert slopes == [0.2, 0.2]

    images = generator(torch.randn(3, 100))
    assert images.shape == (3, 1, 64, 64)
    assert discriminator(images).shape == (3,)
    assert (generator.latent_dim, generator.num_classes, generator.resolution) == (100, 0, 64)
    assert (discriminator.num_classes, discriminator.resolution) == (0, 64)


def test_mlp_follows_resolution(compose_config: Compose) -> None:
    generator, discriminator = build(compose_config, ["model=mlp"], resolution=128)

    assert linear_shapes(generator)[-1] == (1024, 128 * 128)
    assert linear_shapes(discriminator)[0] == (128 * 128, 512)
    images = generator(torch.randn(2, 100))
    assert images.shape == (2, 1, 128, 128)
    assert discriminator(images).shape == (2,)


@pytest.mark.parametrize("resolution", [64, 128, 256])
def test_dcgan_resolutions(compose_config: Compose, resolution: int) -> None:
    torch.manual_seed(0)
    generator, discriminator = build(compose_config, ["model=dcgan"], resolution=resolution)

    images = generator(torch.randn(2, 100))
    assert images.shape == (2, 1, resolution, resolution)
    assert images.min() >= -1 and images.max() <= 1
    assert discriminator(images).shape == (2,)
    assert generator.resolution == discriminator.resolution == resolution
    widest = max(layer.out_channels for layer in discriminator.modules() if isinstance(layer, nn.Conv2d))
    assert widest == 8 * 64  # extra stages at 128 and 256 do not widen the network
    batch_norms = sum(isinstance(layer, nn.BatchNorm2d) for layer in discriminator.modules())
    assert batch_norms == resolution.bit_length() - 4  # every stage down to 4x4 but the first


def test_dcgan_standard_architecture_and_init() -> None:
    torch.manual_seed(0)
    generator, discriminator = build_dcgan(100, False, 64, 64, Conditioning.projection, 64, 0)

    g_convs = [layer for layer in generator.modules() if isinstance(layer, nn.ConvTranspose2d)]
    d_convs = [layer for layer in discriminator.modules() if isinstance(layer, nn.Conv2d)]
    assert [layer.out_channels for layer in g_convs] == [512, 256, 128, 64, 1]
    assert [layer.out_channels for layer in d_convs] == [64, 128, 256, 512, 1]
    assert isinstance(list(discriminator.features)[1], nn.LeakyReLU)  # no BatchNorm on the first layer
    weights = torch.cat([layer.weight.flatten() for layer in g_convs + d_convs])
    assert weights.mean().abs() < 1e-3 and abs(weights.std().item() - 0.02) < 1e-3
    scales = torch.cat([layer.weight for layer in generator.modules() if isinstance(layer, nn.BatchNorm2d)])
    assert abs(scales.mean().item() - 1) < 5e-3 and abs(scales.std().item() - 0.02) < 5e-3


@pytest.mark.parametrize("resolution", [8, 48, 100, 0])
def test_dcgan_rejects_resolution(resolution: int) -> None:
    with pytest.raises(LiverGanError, match="dataset.resolution"):
        build_dcgan(100, False, 64, 64, Conditioning.projection, resolution, 0)


def test_bad_sizes_name_the_option() -> None:
    with pytest.raises(LiverGanError, match="model.generator_widths"):
        build_mlp_gan(100, False, [256, 0], [512, 256], 64, 0)
    with pytest.raises(LiverGanError, match="model.discriminator_channels"):
        build_dcgan(100, False, 64, -1, Conditioning.projection, 64, 0)


SMALL_DCGAN = ["model=dcgan", "model.generator_channels=16", "model.discriminator_channels=16"]
CONDITIONAL_VARIANTS = [
    (["model=mlp"], Conditioning.projection),
    (["model=mlp"], Conditioning.concat),
    ([*SMALL_DCGAN, "model.conditioning=projection"], Conditioning.projection),
    ([*SMALL_DCGAN, "model.conditioning=concat"], Conditioning.concat),
]


def build_conditional(compose_config: Compose, overrides: list[str], conditioning: Conditioning):
    """DCGAN takes model.conditioning from its config; the MLP config has no such field yet."""
    cfg = compose_config([*overrides, "model.conditional=true"])
    extra = {"conditioning": conditioning} if "model=mlp" in overrides else {}
    return instantiate(cfg.model, resolution=32, num_classes=2, **extra)


@pytest.mark.parametrize("overrides, conditioning", CONDITIONAL_VARIANTS)
def test_conditional_variants(
    compose_config: Compose, overrides: list[str], conditioning: Conditioning
) -> None:
    torch.manual_seed(0)
    generator, discriminator = build_conditional(compose_config, overrides, conditioning)
    generator.eval()
    discriminator.eval()
    labels = torch.tensor([0, 1])
    z = torch.randn(1, 100).expand(2, -1)

    images = generator(z, labels)
    assert images.shape == (2, 1, 32, 32)
    assert generator.num_classes == discriminator.num_classes == 2
    assert not torch.allclose(images[0], images[1]), "the label must change the image for the same z"

    same_image = images[:1].expand(2, -1, -1, -1)
    logits = discriminator(same_image, labels)
    assert logits.shape == (2,)
    assert not torch.allclose(logits[0], logits[1]), "the label must change D's logit for the same image"

    weighted = (nn.Linear, nn.Conv2d)
    first_layer = next(layer for layer in discriminator.modules() if isinstance(layer, weighted))
    image_inputs = 32 * 32 if isinstance(first_layer, nn.Linear) else 1
    first_inputs = first_layer.in_features if isinstance(first_layer, nn.Linear) else first_layer.in_channels
    assert first_inputs == image_inputs + (2 if conditioning is Conditioning.concat else 0)


@pytest.mark.parametrize("overrides, conditioning", CONDITIONAL_VARIANTS)
def test_conditional_gradients_reach_the_label_embeddings(
    compose_config: Compose, overrides: list[str], conditioning: Conditioning
) -> None:
    generator, discriminator = build_conditional(compose_config, overrides, conditioning)
    labels = torch.tensor([0, 1, 1])
    discriminator(generator(torch.randn(3, 100), labels), labels).sum().backward()

    assert generator.label_input.embedding.weight.grad.abs().sum() > 0
    projection = discriminator.label_conditioning.projection
    assert (projection is not None) == (conditioning is Conditioning.projection)
    if projection is not None:
        assert projection.embedding.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("builder", [build_mlp_gan, build_dcgan])
def test_labels_must_match_conditioning(builder: Callable) -> None:
    if builder is build_mlp_gan:
        unconditional = builder(100, False, [32], [32], 16, 0)
        conditional = builder(100, True, [32], [32], 16, 2)
    else:
        unconditional = builder(100, False, 8, 8, Conditioning.projection, 16, 0)
        conditional = builder(100, True, 8, 8, Conditioning.projection, 16, 2)
    z, images, labels = torch.randn(2, 100), torch.zeros(2, 1, 16, 16), torch.tensor([0, 1])

    with pytest.raises(ValueError, match="unconditional"):
        unconditional[0](z, labels)
    with pytest.raises(ValueError, match="unconditional"):
        unconditional[1](images, labels)
    with pytest.raises(ValueError, match="conditional"):
        conditional[0](z)
    with pytest.raises(ValueError, match="conditional"):
        conditional[1](images)
    with pytest.raises(ValueError, match="shape"):
        conditional[0](z, labels[:1])


def test_conditional_needs_classes() -> None:
    with pytest.raises(ValueError, match="num_classes"):
        build_mlp_gan(100, True, [32], [32], 16, 0)
    with pytest.raises(ValueError, match="num_classes"):
        build_dcgan(100, False, 8, 8, Conditioning.projection, 16, 2)
