"""Tiny synthetic CT cases written as real NIfTI files, for tests of the readers and the dataset.

The anatomy is built in RAS+ (x towards the patient's right, y anterior, z superior) and can be
stored in any orientation with :func:`reorient`, so a test can write the same patient as RAS,
LPS, with reversed slices or permuted axes, and expect identical slices back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Tuple

import nibabel as nib
import numpy as np
from nibabel.orientations import apply_orientation, axcodes2ornt, inv_ornt_aff, ornt_transform

from liver_gan.data.nifti import write_nifti

REAL_CT_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real-ct" / "totalsegmentator"

SHAPE = (40, 34, 16)  # x, y, z: non-square in-plane on purpose
LIVER_SLICES = range(3, 12)  # axial slices (RAS z) that show liver
TUMOR_SLICES = range(6, 9)  # slices that show the lesion, when there is one
SPINE_HU = 700.0


def synthetic_anatomy(
    seed: int = 0, tumor: bool = True, shape: Tuple[int, int, int] = SHAPE
) -> Tuple[np.ndarray, np.ndarray]:
    """(HU float32, labels uint8) in RAS+: a body, the liver on the patient's right and anterior,
    the spine posterior, an optional lesion, and integer noise (so every flip shows)."""
    size_x, size_y, size_z = shape
    x, y, z = np.meshgrid(np.arange(size_x), np.arange(size_y), np.arange(size_z), indexing="ij")
    rng = np.random.default_rng(seed)
    hu = np.full(shape, -1000.0, dtype=np.float32)
    labels = np.zeros(shape, dtype=np.uint8)
    hu[((x - size_x / 2) / (0.47 * size_x)) ** 2 + ((y - size_y / 2) / (0.45 * size_y)) ** 2 <= 1] = -20.0
    spine = (x - size_x / 2) ** 2 + (y - 0.2 * size_y) ** 2 <= 9
    hu[spine] = SPINE_HU
    liver = (((x - 0.68 * size_x) / (0.2 * size_x)) ** 2 + ((y - 0.55 * size_y) / (0.25 * size_y)) ** 2 <= 1) & np.isin(
        z, LIVER_SLICES
    )
    hu[liver], labels[liver] = 60.0, 1
    if tumor:
        lesion = liver & ((x - 0.68 * size_x) ** 2 + (y - 0.55 * size_y) ** 2 <= 6) & np.isin(z, TUMOR_SLICES)
        hu[lesion], labels[lesion] = 15.0, 2
    hu += np.rint(rng.normal(0.0, 8.0, size=shape)).astype(np.float32)
    return np.maximum(hu, -1024.0), labels  # scanners store air as -1024 HU at the lowest


def reorient(
    ras_array: np.ndarray, axcodes: str, spacing: Tuple[float, float, float] = (0.8, 0.8, 2.5)
) -> Tuple[np.ndarray, np.ndarray]:
    """The RAS+ array stored with axis codes ``axcodes`` (e.g. "LPS", "RAI", "PRS"), and its affine."""
    transform = ornt_transform(axcodes2ornt("RAS"), axcodes2ornt(tuple(axcodes)))
    ras_affine = np.diag([*spacing, 1.0])
    ras_affine[:3, 3] = (-150.0, 20.0, 90.0)
    return apply_orientation(ras_array, transform), ras_affine @ inv_ornt_aff(transform, ras_array.shape)


def write_case(
    volume_path: Path,
    segmentation_path: Path,
    volume_hu: np.ndarray,
    mask: np.ndarray,
    affine: np.ndarray,
    volume_dtype: type = np.int16,
    slope: float = 1.0,
    inter: float = 0.0,
    mask_dtype: type = np.uint8,
) -> None:
    """A volume stored as ``volume_dtype`` with HU = stored * slope + inter, and its mask."""
    stored = np.rint((volume_hu - inter) / slope).astype(volume_dtype)
    write_nifti(volume_path, stored, affine, slope=slope, inter=inter)
    write_nifti(segmentation_path, mask.astype(mask_dtype), affine)


def write_lits_dataset(root: Path, patient_ids: Iterable[int], suffix: str = ".nii.gz", axcodes: str = "RAS") -> Path:
    """A LiTS-layout folder; every third patient (by id) has no tumor."""
    for patient_id in patient_ids:
        hu, labels = synthetic_anatomy(seed=patient_id, tumor=patient_id % 3 != 0)
        (stored_hu, affine), (stored_labels, _) = reorient(hu, axcodes), reorient(labels, axcodes)
        volume, segmentation = root / f"volume-{patient_id}{suffix}", root / f"segmentation-{patient_id}{suffix}"
        write_case(volume, segmentation, stored_hu, stored_labels, affine)
    return root


def count_from_masks(segmentation_paths: Iterable[Path]) -> Tuple[int, int]:
    """(liver slices, tumor slices) counted straight from the files with nibabel, as a reference."""
    liver = tumor = 0
    for path in segmentation_paths:
        labels = np.rint(nib.as_closest_canonical(nib.load(str(path))).get_fdata())
        liver += int((labels >= 1).any(axis=(0, 1)).sum())
        tumor += int((labels == 2).any(axis=(0, 1)).sum())
    return liver, tumor
