"""Slices as 8-bit image files: the one conversion from [-1, 1] to 8-bit levels, and every PNG
the package writes or reads (sample folders and grids, the ImageFolder export, FID's image
folders, the visual Turing test).

:func:`to_uint8` rounds as ``torchvision.utils.save_image`` does, so a PNG of a slice holds the
levels that pytorch-fid's CLI reads from it, and the pixels fed to Inception are those levels:
``python -m pytorch_fid real fake`` on saved folders measures the same images.
"""

from __future__ import annotations

import base64
import io
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from pytorch_fid.fid_score import IMAGE_EXTENSIONS
from torch import Tensor
from torchvision.utils import make_grid, save_image

from liver_gan.atomic import atomic_directory, atomic_write, build_lock
from liver_gan.data.masks import has_masks, overlay
from liver_gan.errors import LiverGanError

CAPTION_HEIGHT = 14  # pixels of the text line under each row of a captioned grid
# A PNG header may claim any size (30000 x 30000 decodes to 2.7 GB): refuse more than 8192 x 8192,
# far above any CT slice, before decoding.
Image.MAX_IMAGE_PIXELS = 8192 * 8192


def to_uint8(images: Tensor) -> Tensor:
    """Images in [-1, 1] as 8-bit levels, on the CPU: clipped, then floor(v * 255 + 0.5) of
    v = (x + 1) / 2 in float32, the arithmetic of ``save_image(..., normalize=True, value_range=(-1, 1))``."""
    return images.detach().float().cpu().clamp(-1, 1).add(1).div(2).mul(255).add(0.5).clamp(0, 255).to(torch.uint8)


def save_png(pixels: Tensor, path: Path | io.BytesIO) -> None:
    """An (H, W) uint8 slice as an 8-bit grayscale PNG (one channel, not three)."""
    Image.fromarray(pixels.numpy()).save(path, format="png")


def png_data_uri(pixels: Tensor) -> str:
    """An (H, W) uint8 slice as a data:image/png;base64 URI."""
    buffer = io.BytesIO()
    save_png(pixels, buffer)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def write_png_folder(images: Tensor, directory: Path) -> None:
    """Write (N, 1, R, R) images in [-1, 1] as ``directory/00000.png``... (8-bit grayscale).

    The folder appears complete or not at all, and replaces an earlier one.
    """
    pixels = to_uint8(images)
    with build_lock(directory), atomic_directory(directory) as tmp:
        for index, image in enumerate(pixels):
            save_png(image[0], tmp / f"{index:05d}.png")


def write_label_pngs(label_maps: Tensor, directory: Path) -> None:
    """Write (N, R, R) uint8 label maps as ``directory/00000.png``... whose pixel values are the
    labels (0, 1, 2), the way nnU-Net and most tools read PNG masks; written like :func:`write_png_folder`."""
    with build_lock(directory), atomic_directory(directory) as tmp:
        for index, labels in enumerate(label_maps.to(torch.uint8)):
            save_png(labels, tmp / f"{index:05d}.png")


def image_grid(images: Tensor, columns: int, pad_value: float = 0.0) -> Tensor:
    """A (3, H, W) grid in [0, 1] of (N, 1, R, R) images in [-1, 1], ``columns`` wide; slices that
    carry mask channels show them as a colour overlay (green liver, red tumor)."""
    images = images.float().cpu()
    if has_masks(images):
        images = overlay(images)
    return make_grid(images, nrow=columns, padding=2, normalize=True, value_range=(-1.0, 1.0), pad_value=pad_value)


def write_grid_png(grid: Tensor, path: Path) -> None:
    """An :func:`image_grid` as a PNG, written atomically; its levels are :func:`to_uint8`'s."""
    atomic_write(Path(path), lambda tmp: save_image(grid, tmp, format="png"))


def write_captioned_rows_png(rows: list[Tensor], captions: list[str], path: Path) -> None:
    """Rows of (K, 1, R, R) images in [-1, 1], one under the other, each an :func:`image_grid` with a
    line of text beneath it (PIL's default font, black on white), as an RGB PNG written atomically."""
    pictures = [grid_picture(image_grid(row, columns=len(row), pad_value=1.0)) for row in rows]
    width = max(picture.width for picture in pictures)
    canvas = Image.new("RGB", (width, sum(picture.height + CAPTION_HEIGHT for picture in pictures)), "white")
    draw, font, top = ImageDraw.Draw(canvas), ImageFont.load_default(), 0
    for picture, caption in zip(pictures, captions):
        canvas.paste(picture, (0, top))
        draw.text((2, top + picture.height), caption, fill="black", font=font)
        top += picture.height + CAPTION_HEIGHT
    atomic_write(Path(path), lambda tmp: canvas.save(tmp, format="png"))


def grid_picture(grid: Tensor) -> Image.Image:
    """An :func:`image_grid` as a PIL image, with ``save_image``'s levels."""
    return Image.fromarray(grid.mul(255).add(0.5).clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy())


def image_files(directory: Path) -> list[Path]:
    """The files pytorch-fid's CLI would read from ``directory``, in its order."""
    return sorted(file for extension in IMAGE_EXTENSIONS for file in Path(directory).glob(f"*.{extension}"))


def _read_image(file: Path, mode: str) -> np.ndarray:
    """One image file as an array; a damaged file, a non-image or a decompression bomb is one line."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(file) as image:
                return np.array(image.convert(mode))
    except (OSError, ValueError, Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        reason = (str(error).splitlines() or [type(error).__name__])[0]
        raise LiverGanError(f"{file}: cannot be read as an image ({reason}); remove it from the folder") from None


def read_image_folder(directory: Path, mode: str = "RGB") -> Tensor:
    """All images of a folder as uint8 (N, C, H, W), converted by PIL to ``mode``: "RGB" (C = 3) as
    pytorch-fid's CLI reads them, or "L" (C = 1) for grayscale slices."""
    directory = Path(directory)
    if not directory.is_dir():
        raise LiverGanError(f"{directory}: not a directory of images")
    files = image_files(directory)
    if not files:
        raise LiverGanError(f"{directory}: no images ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    arrays = [_read_image(file, mode) for file in files]
    sizes = {array.shape for array in arrays}
    if len(sizes) > 1:
        raise LiverGanError(f"{directory}: images differ in size {sorted(sizes)}; resize them to one size")
    pixels = torch.from_numpy(np.stack(arrays))
    return pixels.unsqueeze(1) if mode == "L" else pixels.permute(0, 3, 1, 2).contiguous()
