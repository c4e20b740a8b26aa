"""DCGAN (Radford et al. 2016), with one more up/down stage per doubling of the resolution.

G: z (1x1) -> 4x4 by a 4x4 transposed conv, then stride-2 transposed conv + BatchNorm + ReLU
stages up to R/2, then a last stride-2 transposed conv to one channel + Tanh.  D mirrors it:
stride-2 conv + LeakyReLU(0.2) (no BatchNorm on the first, as in the paper), stride-2 conv +
BatchNorm + LeakyReLU stages down to 4x4, then a 4x4 conv to one logit.

The feature map next to the image has ``base`` channels and each halving of the size doubles
them, capped at ``8 * base`` so that 128 and 256 pixels add stages, not width (at 64 this is
the paper's 512-256-128-64 with base 64).
"""

from __future__ import annotations

from torch import Tensor, nn

from liver_gan.models.common import (
    LEAKY_SLOPE,
    ImageDiscriminator,
    ImageGenerator,
    check_power_of_two,
    require_positive,
)
from liver_gan.models.conditioning import DiscriminatorConditioning, LabelEmbedding, model_classes
from liver_gan.models.schema import Conditioning

MIN_RESOLUTION = 16  # the smallest size with a BatchNorm stage on both sides
MAX_WIDTH_FACTOR = 8


def stage_channels(base: int, resolution: int, size: int) -> int:
    """Channels of the feature map of ``size`` x ``size`` in a network for ``resolution``."""
    return min(base * resolution // (2 * size), MAX_WIDTH_FACTOR * base)


def feature_sizes(resolution: int) -> list[int]:
    """Sizes of the hidden feature maps, from 4 up to resolution / 2."""
    return [4 << step for step in range(resolution.bit_length() - 3)]


def dcgan_init(module: nn.Module) -> None:
    """The paper's initialisation: conv weights N(0, 0.02), BatchNorm scales N(1, 0.02)."""
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        nn.init.normal_(module.weight, 0.0, 0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


class DCGANGenerator(ImageGenerator):
    def __init__(
        self, latent_dim: int, base_channels: int, resolution: int, num_classes: int, image_channels: int = 1
    ) -> None:
        super().__init__(latent_dim, num_classes, resolution, image_channels)
        self.label_input = LabelEmbedding(latent_dim, num_classes)
        sizes = feature_sizes(resolution)
        channels = [stage_channels(base_channels, resolution, size) for size in sizes]
        # Convs followed by BatchNorm carry no bias: BatchNorm's shift replaces it.
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(self.label_input.out_features, channels[0], 4, 1, 0, bias=False),
            nn.BatchNorm2d(channels[0]),
            nn.ReLU(inplace=True),
        ]
        for in_channels, out_channels in zip(channels, channels[1:]):
            layers += [
                nn.ConvTranspose2d(in_channels, out_channels, 4, 2, 1, bias=False),
                nn.BatchNorm2d(out_channels),
                nn.ReLU(inplace=True),
            ]
        layers += [nn.ConvTranspose2d(channels[-1], image_channels, 4, 2, 1), nn.Tanh()]
        self.layers = nn.Sequential(*layers)
        self.apply(dcgan_init)

    def forward(self, z: Tensor, labels: Tensor | None = None, truncation_psi: float = 1.0) -> Tensor:
        """``truncation_psi`` < 1 scales z toward 0, the prior's mean: nearer-average images, less variety."""
        return self.layers(self.label_input(z * truncation_psi, labels)[:, :, None, None])


class DCGANDiscriminator(ImageDiscriminator):
    def __init__(
        self, base_channels: int, resolution: int, num_classes: int, conditioning: Conditioning, image_channels: int = 1
    ) -> None:
        super().__init__(num_classes, resolution)
        sizes = feature_sizes(resolution)[::-1]
        channels = [stage_channels(base_channels, resolution, size) for size in sizes]
        # Projection (Miyato & Koyama 2018) reads the last feature map, sum-pooled over space.
        self.label_conditioning = DiscriminatorConditioning(
            num_classes, conditioning, feature_dim=channels[-1]
        )
        layers: list[nn.Module] = [
            nn.Conv2d(image_channels + self.label_conditioning.extra_inputs, channels[0], 4, 2, 1),
            nn.LeakyReLU(LEAKY_SLOPE, inplace=True),
        ]
        for in_channels, out_channels in zip(channels, channels[1:]):
            layers += [
                nn.Conv2d(in_channels, out_channels, 4, 2, 1, bias=False),
                nn.BatchNorm2d(out_channels),
                nn.LeakyReLU(LEAKY_SLOPE, inplace=True),
            ]
        self.features = nn.Sequential(*layers)
        self.output = nn.Conv2d(channels[-1], 1, 4, 1, 0)
        self.apply(dcgan_init)

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        features = self.features(self.label_conditioning.inputs(x, labels))
        logits = self.output(features).flatten()
        return self.label_conditioning.logits(logits, features.sum(dim=(2, 3)), labels)


def build_dcgan(
    latent_dim: int, conditional: bool, generator_channels: int, discriminator_channels: int, conditioning: Conditioning,
    resolution: int, num_classes: int, image_channels: int = 1,
) -> tuple[DCGANGenerator, DCGANDiscriminator]:
    """The (generator, discriminator) pair for ``model=dcgan`` at ``resolution`` x ``resolution``,
    for slices of ``image_channels`` (the CT, plus mask channels with dataset.masks=true)."""
    require_positive("model.latent_dim", [latent_dim])
    require_positive("model.generator_channels", [generator_channels])
    require_positive("model.discriminator_channels", [discriminator_channels])
    check_power_of_two(resolution, MIN_RESOLUTION, "dcgan")  # the stages halve the size down to 4x4
    classes = model_classes(conditional, num_classes)
    return (
        DCGANGenerator(latent_dim, generator_channels, resolution, classes, image_channels),
        DCGANDiscriminator(discriminator_channels, resolution, classes, conditioning, image_channels),
    )
