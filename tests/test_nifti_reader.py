"""Reading one volume + segmentation pair: Hounsfield units, rounded labels, one orientation."""

from __future__ import annotations

import builtins
import gzip
import tracemalloc
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from nifti_factory import REAL_CT_DIR, SPINE_HU, TUMOR_SLICES, reorient, synthetic_anatomy, write_case

from liver_gan.data.nifti import read_scan, write_nifti
from liver_gan.errors import LiverGanError

# RAS, LPS (the DICOM convention), reversed slice order, flipped rows, and permuted axes.
ORIENTATIONS = ["RAS", "LPS", "RAI", "LAS", "PRS", "SLP"]


def write_oriented_case(directory: Path, axcodes: str, suffix: str = ".nii.gz", **storage) -> tuple[Path, Path]:
    hu, labels = synthetic_anatomy()
    (stored_hu, affine), (stored_labels, _) = reorient(hu, axcodes), reorient(labels, axcodes)
    volume, segmentation = directory / f"volume-1{suffix}", directory / f"segmentation-1{suffix}"
    write_case(volume, segmentation, stored_hu, stored_labels, affine, **storage)
    return volume, segmentation


def radiological(ras_volume: np.ndarray) -> np.ndarray:
    """Every axial slice k of a RAS+ volume as ``arr[:, :, k].T[::-1, ::-1]``: anterior up, patient's right left."""
    return ras_volume.transpose(2, 1, 0)[:, ::-1, ::-1]


def all_slices(scan) -> tuple[np.ndarray, np.ndarray]:
    indices = np.arange(scan.num_slices)
    return scan.hu_slices(indices), scan.label_slices(indices)


@pytest.mark.parametrize("axcodes", ORIENTATIONS)
def test_every_orientation_gives_the_same_slices(tmp_path: Path, axcodes: str) -> None:
    hu, labels = synthetic_anatomy()
    expected_hu = radiological(hu)
    expected_labels = radiological(labels)

    scan = read_scan(*write_oriented_case(tmp_path, axcodes))

    got_hu, got_labels = all_slices(scan)
    np.testing.assert_array_equal(got_hu, expected_hu)
    np.testing.assert_array_equal(got_labels, expected_labels)


def test_slices_are_radiological_liver_left_spine_down(tmp_path: Path) -> None:
    scan = read_scan(*write_oriented_case(tmp_path, "LPS"))
    hu, labels = all_slices(scan)
    liver_slice = TUMOR_SLICES[0]
    liver_rows, liver_cols = np.nonzero(labels[liver_slice] >= 1)
    spine_rows, _ = np.nonzero(hu[liver_slice] > SPINE_HU - 100)

    assert liver_cols.mean() < labels.shape[2] / 2  # the patient's right is on the image's left
    assert liver_rows.mean() < spine_rows.mean()  # anterior up: the spine is below the liver
    assert spine_rows.mean() > labels.shape[1] / 2


@pytest.mark.parametrize(
    ("dtype", "slope", "inter"),
    [
        (np.int16, 1.0, 0.0),
        (np.uint16, 1.0, -1024.0),
        (np.int16, 0.5, -1024.0),
        (np.int32, 1.0, 0.0),
        (np.float32, 1.0, 0.0),
    ],
)
@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_scaled_volumes_read_as_hounsfield_units(
    tmp_path: Path, dtype: type, slope: float, inter: float, suffix: str
) -> None:
    volume, segmentation = write_oriented_case(tmp_path, "LPS", suffix, volume_dtype=dtype, slope=slope, inter=inter)
    reference = nib.as_closest_canonical(nib.load(str(volume))).get_fdata()

    scan = read_scan(volume, segmentation)

    hu, _ = all_slices(scan)
    assert hu.dtype == np.float32
    np.testing.assert_array_equal(hu, radiological(reference))
    np.testing.assert_array_equal(hu, radiological(synthetic_anatomy()[0]))


def test_float_masks_are_rounded_not_truncated(tmp_path: Path) -> None:
    hu, labels = synthetic_anatomy()
    float_mask = labels.astype(np.float64)
    float_mask[labels == 2] = 1.9999  # truncation would make these liver
    float_mask[labels == 1] = 1.0001
    float_mask[labels == 0] = 0.0001
    affine = reorient(hu, "RAS")[1]
    write_case(tmp_path / "v.nii.gz", tmp_path / "s.nii.gz", hu, float_mask, affine, mask_dtype=np.float64)

    scan = read_scan(tmp_path / "v.nii.gz", tmp_path / "s.nii.gz")

    assert scan.labels.dtype == np.int8
    np.testing.assert_array_equal(scan.labels, labels)


@pytest.mark.parametrize("bad_value", [3.0, -1.0, np.nan])
def test_mask_values_outside_the_labels_are_refused(tmp_path: Path, bad_value: float) -> None:
    hu, labels = synthetic_anatomy()
    mask = labels.astype(np.float32)
    mask[0, 0, 0] = bad_value
    affine = reorient(hu, "RAS")[1]
    write_case(tmp_path / "v.nii.gz", tmp_path / "s.nii.gz", hu, mask, affine, mask_dtype=np.float32)

    with pytest.raises(LiverGanError, match=r"s\.nii\.gz: segmentation values"):
        read_scan(tmp_path / "v.nii.gz", tmp_path / "s.nii.gz")


def test_shape_mismatch_names_the_segmentation(tmp_path: Path) -> None:
    hu, labels = synthetic_anatomy()
    affine = reorient(hu, "RAS")[1]
    write_case(tmp_path / "volume-4.nii.gz", tmp_path / "segmentation-4.nii.gz", hu, labels[:, :, :-1], affine)

    with pytest.raises(LiverGanError, match=r"segmentation-4\.nii\.gz: shape \(40, 34, 15\) differs from its volume"):
        read_scan(tmp_path / "volume-4.nii.gz", tmp_path / "segmentation-4.nii.gz")


def test_segmentation_in_another_orientation_is_refused(tmp_path: Path) -> None:
    hu, labels = synthetic_anatomy()
    write_nifti(tmp_path / "v.nii.gz", hu.astype(np.int16), reorient(hu, "RAS")[1])
    write_nifti(tmp_path / "s.nii.gz", labels, reorient(labels, "LPS")[1])

    with pytest.raises(LiverGanError, match=r"s\.nii\.gz: orientation LPS differs from its volume .* \(RAS\)"):
        read_scan(tmp_path / "v.nii.gz", tmp_path / "s.nii.gz")


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
@pytest.mark.parametrize("damaged", ["volume", "segmentation"])
def test_truncated_file_is_named(tmp_path: Path, suffix: str, damaged: str) -> None:
    paths = dict(zip(("volume", "segmentation"), write_oriented_case(tmp_path, "RAS", suffix)))
    data = paths[damaged].read_bytes()
    paths[damaged].write_bytes(data[: len(data) // 2])

    with pytest.raises(LiverGanError, match=rf"{damaged}-1\.nii(\.gz)?: cannot read this NIfTI file") as error:
        read_scan(paths["volume"], paths["segmentation"])
    assert "\n" not in str(error.value)


def test_a_file_that_is_not_nifti_is_named(tmp_path: Path) -> None:
    volume, segmentation = write_oriented_case(tmp_path, "RAS")
    volume.write_bytes(b"<html>login required</html>" * 20)

    with pytest.raises(LiverGanError, match=r"volume-1\.nii\.gz: cannot read"):
        read_scan(volume, segmentation)


def test_a_4d_file_is_refused(tmp_path: Path) -> None:
    hu, labels = synthetic_anatomy()
    write_nifti(tmp_path / "v.nii.gz", hu[..., None].astype(np.int16), np.eye(4))
    write_nifti(tmp_path / "s.nii.gz", labels, np.eye(4))

    with pytest.raises(LiverGanError, match=r"v\.nii\.gz: expected a 3-D"):
        read_scan(tmp_path / "v.nii.gz", tmp_path / "s.nii.gz")


@pytest.mark.skipif(not REAL_CT_DIR.is_dir(), reason=f"no real CT in {REAL_CT_DIR}")
def test_real_ct_int32_volume_and_float64_mask() -> None:
    volume, segmentation = REAL_CT_DIR / "volume-0.nii.gz", REAL_CT_DIR / "segmentation-0.nii.gz"
    assert nib.load(str(volume)).get_data_dtype() == np.int32
    assert nib.load(str(segmentation)).get_data_dtype() == np.float64

    scan = read_scan(volume, segmentation)

    per_slice = scan.labels.max(axis=(0, 1))
    assert np.count_nonzero(per_slice >= 1) == 42
    assert np.count_nonzero(per_slice == 2) == 0
    middle = np.flatnonzero(per_slice >= 1)[21:22]
    hu, labels = scan.hu_slices(middle)[0], scan.label_slices(middle)[0]
    liver_rows, liver_cols = np.nonzero(labels)
    bone_rows, bone_cols = np.nonzero(hu > 400)
    assert liver_cols.mean() < hu.shape[1] / 2  # liver on the image's left
    assert bone_rows.mean() > liver_rows.mean()  # spine towards the bottom
    assert 30 < np.median(hu[labels == 1]) < 80  # contrast-enhanced liver, in HU


@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf])
def test_non_finite_voxels_are_named(tmp_path: Path, bad_value: float) -> None:
    hu, labels = synthetic_anatomy()
    hu[5, 6, 7] = bad_value  # a float32 volume, as some converters write
    affine = reorient(hu, "RAS")[1]
    write_case(tmp_path / "volume-3.nii", tmp_path / "segmentation-3.nii", hu, labels, affine, volume_dtype=np.float32)

    with pytest.raises(LiverGanError, match=r"volume-3\.nii: the volume holds 1 NaN or infinite voxels") as error:
        read_scan(tmp_path / "volume-3.nii", tmp_path / "segmentation-3.nii")
    assert "\n" not in str(error.value)


def test_a_mask_with_fractional_values_is_refused(tmp_path: Path) -> None:
    hu, labels = synthetic_anatomy()
    mask = labels.astype(np.float32)
    mask[labels == 2] = 1.5  # interpolated between liver and tumor: rounding would guess
    affine = reorient(hu, "RAS")[1]
    write_case(tmp_path / "v.nii.gz", tmp_path / "s.nii.gz", hu, mask, affine, mask_dtype=np.float32)

    with pytest.raises(LiverGanError, match=r"s\.nii\.gz: segmentation values are not whole labels \(\d+ voxels such as 1\.5\)"):
        read_scan(tmp_path / "v.nii.gz", tmp_path / "s.nii.gz")


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_a_header_claiming_more_voxels_than_the_file_holds_is_refused_before_reading(
    tmp_path: Path, suffix: str
) -> None:
    """A few hundred bytes claiming 2 GiB: refused from the header, before any voxel is allocated."""
    volume, segmentation = write_oriented_case(tmp_path, "RAS", suffix)
    header = nib.Nifti1Header()
    header.set_data_shape((1024, 1024, 512))
    header.set_data_dtype(np.float32)
    header["vox_offset"] = 352
    crafted = header.binaryblock + b"\0" * 4  # the header, its (empty) extension flag, no voxels
    volume.write_bytes(gzip.compress(crafted) if suffix == ".nii.gz" else crafted)

    tracemalloc.start()
    try:
        with pytest.raises(LiverGanError, match=rf"volume-1\{suffix}: cannot read this NIfTI file: its header claims"):
            read_scan(volume, segmentation)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 * 2**20


def test_an_unreadable_file_is_a_permission_problem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The file exists but the OS refuses to open it, as for a user without read access."""
    volume, segmentation = write_oriented_case(tmp_path, "RAS")
    real_open = builtins.open

    def refusing_open(file: object, *args: object, **kwargs: object) -> object:
        if Path(str(file)) == volume:
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", refusing_open)
    with pytest.raises(LiverGanError, match=r"volume-1\.nii\.gz: cannot read this file: permission denied") as error:
        read_scan(volume, segmentation)
    assert "damaged" not in str(error.value)
