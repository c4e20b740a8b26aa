"""Image tensors to and from folders of 8-bit PNGs, the form pytorch-fid's own CLI reads.

One quantisation, :func:`to_uint8`, is used both for the PNGs written here and for the pixels
fed to Inception, so the saved ``fid_images/`` folders hold bit-for-bit the pixels that were
measured and ``python -m pytorch_fid real fake`` sees the same input.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from pytorch_fid.fid_score import IMAGE_EXTENSIONS
from torch import Tensor

from liver_gan.atomic import atomic_directory, build_lock
from liver_gan.errors import LiverGanError


def to_uint8(images: Tensor) -> Tensor:
    """Images in [-1, 1] as the 8-bit levels a PNG of them holds: round((x + 1) / 2 * 255)."""
    return ((images.detach().float().cpu() + 1) / 2).clamp(0, 1).mul(255).round().to(torch.uint8)


def write_png_folder(images: Tensor, directory: Path) -> None:
    """Write (N, 1, R, R) images in [-1, 1] as ``directory/00000.png``... (8-bit grayscale).

    The folder appears complete or not at all, and replaces an earlier one.  PIL writes the
    levels of :func:`to_uint8` directly: torchvision's ``save_image`` would round differently
    and store three identical channels.
    """
    pixels = to_uint8(images)
    with build_lock(directory), atomic_directory(directory) as tmp:
        for index, image in enumerate(pixels):
            Image.fromarray(image[0].numpy()).save(tmp / f"{index:05d}.png")


def image_files(directory: Path) -> list[Path]:
    """The files pytorch-fid's CLI would read from ``directory``, in its order."""
    return sorted(file for extension in IMAGE_EXTENSIONS for file in Path(directory).glob(f"*.{extension}"))


def read_image_folder(directory: Path) -> Tensor:
    """All images of a folder as uint8 (N, 3, H, W), converted to RGB as pytorch-fid's CLI does."""
    directory = Path(directory)
    if not directory.is_dir():
        raise LiverGanError(f"{directory}: not a directory of images")
    files = image_files(directory)
    if not files:
        raise LiverGanError(f"{directory}: no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    arrays = [np.asarray(Image.open(file).convert("RGB")) for file in files]
    sizes = {array.shape for array in arrays}
    if len(sizes) > 1:
        raise LiverGanError(f"{directory}: images differ in size {sorted(sizes)}; resize them to one size")
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
