"""Cutting a scan into slices: which slices, which class, window, crop and resize."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from nifti_factory import LIVER_SLICES, TUMOR_SLICES, reorient, synthetic_anatomy, write_case

from liver_gan.data.nifti import CTScan, read_scan
from liver_gan.data.schema import Crop
from liver_gan.data.slicing import (
    OUTSIDE,
    SliceOptions,
    crop_square,
    liver_slices,
    liver_square,
    pad_to_square,
    resize,
    slice_scan,
)


def options(crop: Crop = Crop.none, resolution: int = 16, crop_min_fraction: float = 0.0) -> SliceOptions:
    return SliceOptions(
        resolution=resolution,
        window_level=50.0,
        window_width=400.0,
        crop=crop,
        crop_margin=0.15,
        crop_min_fraction=crop_min_fraction,
    )


def test_liver_slices_and_tumor_flags_come_from_the_full_resolution_mask() -> None:
    labels = np.zeros((64, 64, 5), dtype=np.int8)
    labels[10:30, 10:30, 1] = 1
    labels[10:30, 10:30, 2] = 1
    labels[20, 20, 2] = 2  # one tumor voxel: gone after resizing, still a tumor slice
    labels[40:50, 40:50, 4] = 2  # only tumor voxels: a lesion is liver tissue too, so the slice is kept

    indices, tumor = liver_slices(labels)

    np.testing.assert_array_equal(indices, [1, 2, 4])
    np.testing.assert_array_equal(tumor, [False, True, True])


def test_hu_window_maps_to_minus_one_one_through_the_file_scaling() -> None:
    hu = np.array([-1000.0, -150.0, 50.0, 250.0, 3000.0])
    stored = ((hu + 1024.0) / 0.5).astype(np.int16).reshape(5, 1, 1)  # scl_slope 0.5, scl_inter -1024
    scan = CTScan(stored=stored, slope=0.5, inter=-1024.0, labels=np.ones((5, 1, 1), dtype=np.int8))

    windowed = scan.windowed_slices(np.array([0]), level=50.0, width=400.0)

    # Radiological display reverses the x axis (the patient's right on the left).
    np.testing.assert_allclose(windowed[0, 0, ::-1], [-1.0, -1.0, 0.0, 1.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(scan.hu_slices(np.array([0]))[0, 0, ::-1], hu)


def test_pad_to_square_centres_with_outside_value() -> None:
    images = np.zeros((2, 4, 8), dtype=np.float32)

    padded = pad_to_square(images)

    assert padded.shape == (2, 8, 8)
    assert (padded[:, 2:6] == 0).all()
    assert (padded[:, :2] == OUTSIDE).all() and (padded[:, 6:] == OUTSIDE).all()


def test_liver_square_is_centred_with_margin() -> None:
    liver = np.zeros((100, 100), dtype=bool)
    liver[40:60, 30:70] = True  # 20 rows x 40 columns

    top, left, side = liver_square(liver, margin=0.25)

    assert side == 60  # 40 * (1 + 2 * 0.25)
    assert (top, left) == (20, 20)  # centred on rows 40..59 and columns 30..69


def test_liver_square_never_shrinks_below_the_minimum_side() -> None:
    liver = np.zeros((40, 40), dtype=bool)
    liver[20:22, 20:22] = True  # a liver tip: a 2-pixel box

    top, left, side = liver_square(liver, margin=0.25, min_side=14)

    assert side == 14
    assert top <= 20 and top + side >= 22 and left <= 20 and left + side >= 22


def test_crop_square_pads_with_outside_where_it_leaves_the_image() -> None:
    image = np.arange(16, dtype=np.float32).reshape(4, 4)

    crop = crop_square(image, (-1, 2, 3))

    np.testing.assert_array_equal(crop, [[OUTSIDE] * 3, [2, 3, OUTSIDE], [6, 7, OUTSIDE]])


def test_resize_is_antialiased() -> None:
    checkerboard = (np.indices((64, 64)).sum(axis=0) % 2 * 2 - 1).astype(np.float32)[None]

    small = resize(checkerboard, 16)

    assert small.shape == (1, 16, 16)
    assert np.abs(small).max() < 0.1  # plain bilinear would alias this to a pattern of +-1


def write_scan(directory: Path, axcodes: str, tumor: bool = True):
    hu, labels = synthetic_anatomy(tumor=tumor)
    (stored_hu, affine), (stored_labels, _) = reorient(hu, axcodes), reorient(labels, axcodes)
    write_case(directory / f"v-{axcodes}.nii.gz", directory / f"s-{axcodes}.nii.gz", stored_hu, stored_labels, affine)
    return read_scan(directory / f"v-{axcodes}.nii.gz", directory / f"s-{axcodes}.nii.gz")


@pytest.mark.parametrize("crop", [Crop.none, Crop.liver])
def test_slices_are_the_same_in_every_orientation(tmp_path: Path, crop: Crop) -> None:
    reference = slice_scan(write_scan(tmp_path, "RAS"), options(crop))

    for axcodes in ("LPS", "RAI", "PLI"):
        sliced = slice_scan(write_scan(tmp_path, axcodes), options(crop))
        np.testing.assert_array_equal(sliced.images, reference.images)
        np.testing.assert_array_equal(sliced.tumor, reference.tumor)
        np.testing.assert_array_equal(sliced.slice_indices, reference.slice_indices)


def test_slice_scan_keeps_liver_slices_and_flags_tumor(tmp_path: Path) -> None:
    sliced = slice_scan(write_scan(tmp_path, "LPS"), options(resolution=32))

    np.testing.assert_array_equal(sliced.slice_indices, list(LIVER_SLICES))
    np.testing.assert_array_equal(sliced.tumor, np.isin(list(LIVER_SLICES), list(TUMOR_SLICES)))
    assert sliced.images.dtype == np.float16 and sliced.images.shape == (len(LIVER_SLICES), 32, 32)
    assert sliced.images.min() >= -1 and sliced.images.max() <= 1
    assert sliced.num_slices == 16


def liver_fraction(images: np.ndarray) -> float:
    """Share of pixels near liver intensity (60 HU is 0.05 in the default window)."""
    return float(np.mean(np.abs(images.astype(np.float32) - 0.05) < 0.1))


def test_liver_crop_zooms_onto_the_liver(tmp_path: Path) -> None:
    scan = write_scan(tmp_path, "RAS")
    whole = slice_scan(scan, options(Crop.none, resolution=32))
    cropped = slice_scan(scan, options(Crop.liver, resolution=32))

    assert liver_fraction(cropped.images) > 2 * liver_fraction(whole.images)


def test_a_scan_without_liver_gives_no_slices(tmp_path: Path) -> None:
    hu, labels = synthetic_anatomy()
    affine = reorient(hu, "RAS")[1]
    write_case(tmp_path / "v.nii.gz", tmp_path / "s.nii.gz", hu, np.zeros_like(labels), affine)

    for crop in Crop:
        sliced = slice_scan(read_scan(tmp_path / "v.nii.gz", tmp_path / "s.nii.gz"), options(crop))
        assert sliced.images.shape == (0, 16, 16) and len(sliced.tumor) == 0
