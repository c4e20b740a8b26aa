"""Cut one scan into the dataset's slices (thesis section 6.1, done properly).

A slice is kept when it shows liver (any label >= 1) and is a tumor slice when any voxel is
tumor (label 2), decided on the full-resolution mask before anything is resized. Intensities
are clipped to a Hounsfield window and mapped to [-1, 1]. Each slice is then made square
(padded, or cropped around its liver) and resized with antialiased bilinear interpolation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from liver_gan.data.labels import BACKGROUND_LABEL, LIVER_LABEL, TUMOR_LABEL
from liver_gan.data.masks import resize_labels
from liver_gan.data.nifti import CTScan
from liver_gan.data.schema import Crop

OUTSIDE = -1.0  # value of pixels outside the scan: the bottom of the window, like air


@dataclass(frozen=True)
class SliceOptions:
    """Every option that changes the pixels of a slice (all of them key the cache)."""

    resolution: int
    window_level: float  # HU
    window_width: float  # HU
    crop: Crop
    crop_margin: float  # fraction of the liver bounding box added on each side
    crop_min_fraction: float  # smallest crop side, as a fraction of the slice's shorter side
    masks: bool = False  # also keep each slice's label map


@dataclass(frozen=True)
class ScanSlices:
    """The kept slices of one scan."""

    images: np.ndarray  # float16 (n, R, R) in [-1, 1]
    tumor: np.ndarray  # bool (n,)
    slice_indices: np.ndarray  # int32 (n,), axial index in the canonical volume (0 = most inferior)
    num_slices: int  # axial slices in the whole volume
    spacing: np.ndarray  # float32 (n, 3): mm per pixel of the resized slice (rows, columns), and slice thickness
    label_maps: np.ndarray | None = None  # int8 (n, R, R), 0/1/2, with SliceOptions.masks


# Slices windowed and resized together: full-resolution float32 memory stays at a few tens of
# MB per volume instead of the whole liver range (hundreds of MB to fault in and throw away).
SLICES_PER_CHUNK = 32


@dataclass(frozen=True)
class _Chunk:
    images: np.ndarray  # float16 (n, R, R)
    sides: np.ndarray  # (n,) side of each slice's square, in source pixels
    label_maps: np.ndarray | None  # int8 (n, R, R)


def slice_scan(scan: CTScan, options: SliceOptions) -> ScanSlices:
    indices, tumor = liver_slices(scan.labels)
    chunks = [
        _window_and_resize(scan, indices[start : start + SLICES_PER_CHUNK], options)
        for start in range(0, len(indices), SLICES_PER_CHUNK)
    ]
    empty = np.empty((0, options.resolution, options.resolution))
    resized = np.concatenate([chunk.images for chunk in chunks]) if chunks else empty.astype(np.float16)
    sides = np.concatenate([chunk.sides for chunk in chunks]) if chunks else np.empty(0)
    label_maps = None
    if options.masks:
        label_maps = np.concatenate([chunk.label_maps for chunk in chunks]) if chunks else empty.astype(np.int8)
    return ScanSlices(
        resized, tumor, indices.astype(np.int32), scan.num_slices, slice_spacing(scan, sides, options.resolution), label_maps
    )


def slice_spacing(scan: CTScan, sides: np.ndarray, resolution: int) -> np.ndarray:
    """float32 (n, 3): millimetres per resized pixel down the rows (the scan's y) and along the
    columns (its x), then the slice thickness (z), for squares of ``sides`` source pixels."""
    x, y, z = scan.spacing
    scale = np.asarray(sides, dtype=np.float64) / resolution
    return np.stack([scale * y, scale * x, np.full(len(scale), z)], axis=1).astype(np.float32)


def _window_and_resize(scan: CTScan, indices: np.ndarray, options: SliceOptions) -> _Chunk:
    images = scan.windowed_slices(indices, options.window_level, options.window_width)
    labels = scan.label_slices(indices) if options.crop is Crop.liver or options.masks else None
    label_maps = None
    if options.crop is Crop.liver:
        min_side = math.ceil(options.crop_min_fraction * min(images.shape[1:]))
        squares = [liver_square(liver, options.crop_margin, min_side) for liver in labels >= LIVER_LABEL]
        resized = crop_and_resize(images, squares, options.resolution)
        sides = np.array([side for _, _, side in squares])
        if options.masks:
            label_maps = np.stack(
                [resize_labels(crop_square(label, square, BACKGROUND_LABEL)[None], options.resolution)[0]
                 for label, square in zip(labels, squares)]
            )
    else:
        resized = resize(pad_to_square(images), options.resolution)
        sides = np.full(len(images), max(images.shape[1:]))
        if options.masks:
            label_maps = resize_labels(pad_to_square(labels, BACKGROUND_LABEL), options.resolution)
    return _Chunk(resized.astype(np.float16), sides, label_maps)


def liver_slices(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Canonical (X, Y, Z) labels -> (indices of slices with liver or tumor, whether each has tumor)."""
    highest = labels.max(axis=(0, 1))
    indices = np.flatnonzero(highest >= LIVER_LABEL)
    return indices, highest[indices] >= TUMOR_LABEL


def pad_to_square(images: np.ndarray, fill: float = OUTSIDE) -> np.ndarray:
    """Centre (n, h, w) slices on a square canvas filled with ``fill`` (air, or background for
    label maps), so resizing keeps the anatomy's proportions."""
    height, width = images.shape[1:]
    if height == width:
        return images
    side = max(height, width)
    top, left = (side - height) // 2, (side - width) // 2
    padding = ((0, 0), (top, side - height - top), (left, side - width - left))
    return np.pad(images, padding, constant_values=fill)


def liver_square(liver: np.ndarray, margin: float, min_side: int = 1) -> tuple[int, int, int]:
    """(top, left, side) of the square centred on the liver's bounding box, grown by ``margin``
    and at least ``min_side`` pixels wide."""
    rows = np.flatnonzero(liver.any(axis=1))
    cols = np.flatnonzero(liver.any(axis=0))
    extent = max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1
    side = max(math.ceil(extent * (1.0 + 2.0 * margin)), min_side)
    top = round((rows[0] + rows[-1] + 1 - side) / 2)
    left = round((cols[0] + cols[-1] + 1 - side) / 2)
    return top, left, side


def crop_square(image: np.ndarray, square: tuple[int, int, int], fill: float = OUTSIDE) -> np.ndarray:
    """Cut ``square`` out of a 2-D image; where it leaves the image it is filled with ``fill``."""
    top, left, side = square
    crop = np.full((side, side), fill, dtype=image.dtype)
    rows = slice(max(top, 0), min(top + side, image.shape[0]))
    cols = slice(max(left, 0), min(left + side, image.shape[1]))
    crop[rows.start - top : rows.stop - top, cols.start - left : cols.stop - left] = image[rows, cols]
    return crop


def resize(images: np.ndarray, resolution: int) -> np.ndarray:
    """(n, s, s) float32 -> (n, R, R) with antialiased bilinear interpolation, all in one call."""
    if images.shape[1:] == (resolution, resolution):
        return images
    batch = torch.from_numpy(np.ascontiguousarray(images)).unsqueeze(1)
    resized = F.interpolate(batch, size=(resolution, resolution), mode="bilinear", antialias=True, align_corners=False)
    return resized.squeeze(1).numpy()


def crop_and_resize(images: np.ndarray, squares: list[tuple[int, int, int]], resolution: int) -> np.ndarray:
    """Crop each slice to its own square; crops differ in size, so each is resized on its own."""
    resized = np.empty((len(images), resolution, resolution), dtype=np.float32)
    for index, (image, square) in enumerate(zip(images, squares)):
        resized[index] = resize(crop_square(image, square)[None], resolution)[0]
    return resized
