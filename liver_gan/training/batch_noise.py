"""The random numbers of one training step, drawn per sample of the global batch.

A step's latent vectors (GAN) and its timesteps, noise images and dropped labels (diffusion) come
from a stream seeded by the run's seed and the step number, the same stream on every rank.  Each
rank draws the values of the whole global batch and keeps its own shard's rows, so that

- the ranks' samples get different noise, as a single process's samples do;
- N ranks draw exactly the noise one process draws for the same global batch, so in deterministic
  mode their weights agree (tests/test_distributed.py);
- a resume needs no saved stream for it: the step number is its state.

Drawing the whole global batch on every rank costs one batch of latent vectors (of noise images, for
diffusion) per step, small beside the networks' passes.  The other random draws of a step
(augmentation, WGAN-GP's interpolation) stay on each rank's own seeded stream (``distributed.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

# Keeps the step streams apart from distributed.rank_seed's streams of the same run seed.
STEP_STREAM = 1


def step_seed(seed: int, step: int) -> int:
    """The seed of step ``step``'s noise in a run of seed ``seed``."""
    return int(np.random.SeedSequence(seed, spawn_key=(STEP_STREAM, step)).generate_state(1)[0])


@dataclass(frozen=True)
class BatchNoise:
    """One step's noise: values for every sample of the global batch, of which this rank keeps ``rows``."""

    generator: torch.Generator
    global_size: int
    rows: Tensor  # positions of this rank's samples in the global batch, on the generator's device

    @classmethod
    def of_step(cls, seed: int, step: int, rows: Tensor, global_size: int) -> BatchNoise:
        """Step ``step``'s noise of a run of seed ``seed``, for the samples at ``rows`` of ``global_size``."""
        generator = torch.Generator(rows.device).manual_seed(step_seed(seed, step))
        return cls(generator, global_size, rows)

    @classmethod
    def of_batch(cls, size: int, device: torch.device, generator: torch.Generator | None = None) -> BatchNoise:
        """Noise for a whole batch of one process from ``generator``, or else seeded from torch's
        global RNG (a step called outside the training loop: tests, benchmarks)."""
        if generator is None:
            seed = int(torch.randint(0, 2**62, (1,)).item())
            generator = torch.Generator(device).manual_seed(seed)
        return cls(generator, size, torch.arange(size, device=device))

    @property
    def device(self) -> torch.device:
        return self.generator.device

    def randn(self, *sample_shape: int, dtype: torch.dtype | None = None) -> Tensor:
        """Standard normal values of shape ``sample_shape`` per sample."""
        values = torch.randn(self.global_size, *sample_shape, generator=self.generator, device=self.device, dtype=dtype)
        return values[self.rows]

    def rand(self) -> Tensor:
        """One uniform value in [0, 1) per sample."""
        return torch.rand(self.global_size, generator=self.generator, device=self.device)[self.rows]

    def randint(self, high: int) -> Tensor:
        """One integer in [0, high) per sample."""
        return torch.randint(0, high, (self.global_size,), generator=self.generator, device=self.device)[self.rows]
