"""The training set is held on the device as float16 and cast per batch, losing nothing (issue 17)."""

from __future__ import annotations

import torch

from liver_gan.training.device_images import CHECK_CHUNK, DeviceImages

CPU = torch.device("cpu")


def test_float16_exact_images_are_held_as_float16_and_batches_come_back_float32() -> None:
    images = (torch.rand(CHECK_CHUNK + 5, 1, 4, 4) * 2 - 1).half().float()
    held = DeviceImages(images, CPU)
    indices = torch.tensor([CHECK_CHUNK + 4, 0, 7])
    assert held.images.dtype == torch.float16 and len(held) == len(images)
    assert held[indices].dtype == torch.float32
    torch.testing.assert_close(held[indices], images[indices], rtol=0, atol=0)


def test_images_float16_would_round_stay_float32() -> None:
    images = (torch.rand(CHECK_CHUNK + 5, 1, 4, 4) * 2 - 1).half().float()
    images[CHECK_CHUNK + 2, 0, 1, 1] = 1 / 3  # not a float16 value, in the last chunk
    held = DeviceImages(images, CPU)
    assert held.images.dtype == torch.float32
    torch.testing.assert_close(held[torch.arange(len(images))], images, rtol=0, atol=0)
