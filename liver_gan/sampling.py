"""Generate images from a generator: batched, without gradients, reproducible from a seed.

Besides :func:`generate` (``num_images`` from one seed's noise stream), the ways of
``liver-gan-sample``: one image per seed (:func:`seed_latents`: seed s gives the same image in any
range), a latent walk between seeds (:func:`walk_latents`), and the truncation trick
(``truncation_psi`` < 1: images nearer the average, at the cost of variety).
"""

from __future__ import annotations

import re
from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from liver_gan.errors import LiverGanError

SEED_RANGE = re.compile(r"(\d+)(?:-(\d+))?")  # "7" or "0-63", both ends included


def generate(
    generator: nn.Module,
    num_images: int,
    device: torch.device | str,
    batch_size: int = 256,
    labels: Tensor | None = None,
    seed: int | None = None,
    truncation_psi: float = 1.0,
) -> Tensor:
    """CPU float32 (N, K, R, R) images in [-1, 1] from ``generator`` in eval mode (K: its ``image_channels``).

    The noise is drawn on the CPU from its own ``torch.Generator`` when a seed is given, so a
    seed gives the same samples on any device and leaves the global RNG untouched.  The
    generator's train/eval mode is restored afterwards, so training can sample mid-run.
    ``truncation_psi`` below 1 is the truncation trick of a GAN generator (see :func:`_forward`).
    """
    if labels is not None and len(labels) != num_images:
        raise ValueError(f"{len(labels)} labels for {num_images} images")
    noise_rng = torch.Generator().manual_seed(seed) if seed is not None else None

    def noise(count: int) -> Tensor:
        return torch.randn(count, generator.latent_dim, generator=noise_rng)

    return _generate_batches(generator, num_images, noise, device, batch_size, labels, truncation_psi)


def generate_from_latents(
    generator: nn.Module,
    latents: Tensor,
    device: torch.device | str,
    batch_size: int,
    labels: Tensor | None,
    truncation_psi: float,
) -> Tensor:
    """As :func:`generate`, from given (N, latent_dim) latents (:func:`seed_latents`, :func:`walk_latents`);
    liver-gan-sample, its one caller, gives every option."""
    if labels is not None and len(labels) != len(latents):
        raise ValueError(f"{len(labels)} labels for {len(latents)} latents")
    rows = iter(latents.split(batch_size))
    return _generate_batches(generator, len(latents), lambda count: next(rows), device, batch_size, labels, truncation_psi)


def _generate_batches(
    generator: nn.Module,
    num_images: int,
    noise: Callable[[int], Tensor],
    device: torch.device | str,
    batch_size: int,
    labels: Tensor | None,
    truncation_psi: float,
) -> Tensor:
    was_training = generator.training
    generator.eval()
    batches = [torch.empty(0, generator.image_channels, generator.resolution, generator.resolution)]
    try:
        with torch.no_grad():
            for start in range(0, num_images, batch_size):
                count = min(batch_size, num_images - start)
                batch_labels = None if labels is None else labels[start : start + count].to(device)
                batches.append(_forward(generator, noise(count).to(device), batch_labels, truncation_psi).float().cpu())
    finally:
        generator.train(was_training)
    return torch.cat(batches)


def _forward(generator: nn.Module, noise: Tensor, labels: Tensor | None, truncation_psi: float) -> Tensor:
    """``generator(noise, labels)``; with ``truncation_psi`` != 1 the GAN generators' own truncation
    (StyleGAN2: w toward the mapping network's average w; DCGAN, MLP: z toward 0, the prior's mean)."""
    if truncation_psi == 1.0:
        return generator(noise, labels)
    return generator(noise, labels, truncation_psi=truncation_psi)


def parse_seeds(text: str, option: str = "seeds") -> list[int]:
    """``"0-63"``, ``"5"`` or ``"0-3,10,20-21"`` as the list of seeds, in the order given."""
    seeds: list[int] = []
    for part in str(text).replace(" ", "").split(","):
        match = SEED_RANGE.fullmatch(part)
        if match is None or (match[2] is not None and int(match[2]) < int(match[1])):
            raise LiverGanError(
                f"{option}={text}: write seeds as a range and/or a list of non-negative integers, "
                f"e.g. {option}=0-63 or {option}='0-3,10' (quoted: Hydra reads a bare comma as a sweep)"
            )
        first = int(match[1])
        seeds.extend(range(first, int(match[2] or first) + 1))
    return seeds


def seed_latents(seeds: Sequence[int], latent_dim: int) -> Tensor:
    """(len(seeds), latent_dim) float32 z, row i drawn from its own ``torch.Generator`` seeded with
    ``seeds[i]``: a seed gives the same z, so the same image whatever else is asked with it (up to
    the last float32 bits, which a batch's matrix products may round differently)."""
    rows = [torch.randn(1, latent_dim, generator=torch.Generator().manual_seed(seed)) for seed in seeds]
    return torch.cat(rows) if rows else torch.empty(0, latent_dim)


def walk_latents(seeds: Sequence[int], steps: int, latent_dim: int) -> Tensor:
    """(len(seeds) - 1) * steps latents: for each pair of consecutive seeds, ``steps`` points from
    the first's z to the second's, both ends included, by spherical interpolation (slerp), which
    keeps the norm a Gaussian latent has; straight lines pass through the low-norm middle."""
    ends = seed_latents(seeds, latent_dim)
    fractions = torch.linspace(0.0, 1.0, steps)[:, None]
    return torch.cat([slerp(start, end, fractions) for start, end in zip(ends, ends[1:])])


def slerp(start: Tensor, end: Tensor, fractions: Tensor) -> Tensor:
    """Points along the great circle from ``start`` to ``end`` (1-D), one per row of ``fractions``."""
    cosine = torch.dot(start, end) / (start.norm() * end.norm())
    angle = torch.arccos(cosine.clamp(-1.0, 1.0))
    if angle < 1e-6:  # (nearly) the same direction: a straight line is the circle
        return start + fractions * (end - start)
    return (torch.sin((1 - fractions) * angle) * start + torch.sin(fractions * angle) * end) / torch.sin(angle)


def balanced_labels(num_images: int, num_classes: int) -> Tensor:
    """int64 labels in class blocks (0, 0, ..., 1, 1, ...) as even as possible; earlier classes get the remainder."""
    per_class = torch.full((num_classes,), num_images // num_classes)
    per_class[: num_images % num_classes] += 1
    return torch.arange(num_classes).repeat_interleave(per_class)
