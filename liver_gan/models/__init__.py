"""GAN families, one module each.

Each is built by ``hydra.utils.instantiate(cfg.model, resolution=R, num_classes=C)``.

Every builder returns ``(generator, discriminator)``:

- ``generator(z[N, latent_dim], labels[N] | None) -> images[N, 1, R, R]`` in [-1, 1];
- ``discriminator(images[N, 1, R, R], labels[N] | None) -> logits[N]`` (no sigmoid: the losses
  work on logits, and a probability is only ever shown in logs).

``C`` is 2 for a conditional model and 0 otherwise; labels are given exactly when ``C > 0``.
"""

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
