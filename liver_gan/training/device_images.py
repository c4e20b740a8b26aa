"""The training set on the training device, kept compact and cast to float32 one batch at a time.

As float32, 19k LiTS slices of 256 x 256 take 4.8 GB of GPU memory per process.  The dataset cache
stores its slices as float16 (liver_gan/data/cache.py), so a float16 copy on the device holds the
very same values in half the memory; only the batch being trained on is cast to float32.
"""

from __future__ import annotations

import torch
from torch import Tensor

# Slices compared per pass when checking that float16 holds the images exactly: bounds the
# temporary float32 copy that the comparison makes.
CHECK_CHUNK = 1024


class DeviceImages:
    """(N, 1, R, R) images on ``device``, indexed like a tensor: ``images[indices]`` is a float32 batch."""

    def __init__(self, images: Tensor, device: torch.device) -> None:
        self.images = compact(images).to(device)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, indices: Tensor) -> Tensor:
        return self.images[indices].float()


def compact(images: Tensor) -> Tensor:
    """``images`` as float16 where that holds every value exactly (the cache's slices), else unchanged."""
    half = images.to(torch.float16)
    exact = all(
        torch.equal(half_chunk.float(), chunk)
        for half_chunk, chunk in zip(half.split(CHECK_CHUNK), images.float().split(CHECK_CHUNK))
    )
    return half if exact else images
