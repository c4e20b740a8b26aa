"""What the model families' networks share: the attributes every caller reads off a generator or
a discriminator (the interface of liver_gan/models/registry.py), set in one place; the check of the
layer sizes a user's config gives, and the size check of the families that double or halve the
image between 4x4 and its side; the discriminators' LeakyReLU slope.
"""

from __future__ import annotations

from typing import Iterable

from torch import nn

from liver_gan.errors import LiverGanError

# The negative slope of every discriminator's LeakyReLU, as in the DCGAN paper and the thesis.
LEAKY_SLOPE = 0.2


def require_positive(option: str, values: Iterable[int]) -> None:
    """Layer sizes come from the user's config: a zero or negative one is a config error."""
    values = list(values)
    if any(value < 1 for value in values):
        raise LiverGanError(f"{option} must be positive, got {values}: set it to positive integers")


def check_power_of_two(resolution: int, min_resolution: int, family: str) -> None:
    """A network whose stages double or halve the size from or down to 4x4 needs a power of two."""
    if resolution < min_resolution or resolution & (resolution - 1):
        raise LiverGanError(
            f"dataset.resolution={resolution} does not suit model={family}: "
            f"use a power of two >= {min_resolution} (64, 128 or 256)"
        )


class ImageGenerator(nn.Module):
    """A network that draws images: ``latent_dim`` numbers of z (and a label when ``num_classes`` > 0)
    to ``image_channels`` x ``resolution`` x ``resolution`` images, what sampling reads off it."""

    def __init__(self, latent_dim: int, num_classes: int, resolution: int, image_channels: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.num_classes = num_classes
        self.resolution = resolution
        self.image_channels = image_channels


class ImageDiscriminator(nn.Module):
    """A GAN's discriminator of ``resolution``-pixel images, given labels when ``num_classes`` > 0."""

    def __init__(self, num_classes: int, resolution: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.resolution = resolution
