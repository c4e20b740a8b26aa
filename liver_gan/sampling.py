"""Generate images from a generator: batched, without gradients, reproducible from a seed."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def generate(
    generator: nn.Module,
    num_images: int,
    device: torch.device | str,
    batch_size: int = 256,
    labels: Tensor | None = None,
    seed: int | None = None,
) -> Tensor:
    """CPU float32 (N, K, R, R) images in [-1, 1] from ``generator`` in eval mode (K: its ``image_channels``).

    The noise is drawn on the CPU from its own ``torch.Generator`` when a seed is given, so a
    seed gives the same samples on any device and leaves the global RNG untouched.  The
    generator's train/eval mode is restored afterwards, so training can sample mid-run.
    """
    if labels is not None and len(labels) != num_images:
        raise ValueError(f"{len(labels)} labels for {num_images} images")
    noise_rng = torch.Generator().manual_seed(seed) if seed is not None else None
    was_training = generator.training
    generator.eval()
    batches = [torch.empty(0, generator.image_channels, generator.resolution, generator.resolution)]
    try:
        with torch.no_grad():
            for start in range(0, num_images, batch_size):
                count = min(batch_size, num_images - start)
                noise = torch.randn(count, generator.latent_dim, generator=noise_rng).to(device)
                batch_labels = None if labels is None else labels[start : start + count].to(device)
                batches.append(generator(noise, batch_labels).float().cpu())
    finally:
        generator.train(was_training)
    return torch.cat(batches)


def balanced_labels(num_images: int, num_classes: int) -> Tensor:
    """int64 labels in class blocks (0, 0, ..., 1, 1, ...) as even as possible; earlier classes get the remainder."""
    per_class = torch.full((num_classes,), num_images // num_classes)
    per_class[: num_images % num_classes] += 1
    return torch.arange(num_classes).repeat_interleave(per_class)
