"""What every family's networks share: the discriminators' LeakyReLU slope and the check of the layer
sizes a user's config gives."""

from __future__ import annotations

from typing import Iterable

from liver_gan.errors import LiverGanError

# The negative slope of every discriminator's LeakyReLU, as in the DCGAN paper and the thesis.
LEAKY_SLOPE = 0.2


def require_positive(option: str, values: Iterable[int]) -> None:
    """Layer sizes come from the user's config: a zero or negative one is a config error."""
    values = list(values)
    if any(value < 1 for value in values):
        raise LiverGanError(f"{option} must be positive, got {values}: set it to positive integers")
