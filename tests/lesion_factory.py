"""Tiny livers for the lesion painter's and liver-gan-insert's tests, in memory or as LiTS folders
stored the ways real files come (orientations, integer types with an intercept, float HU)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
from nifti_factory import reorient

from liver_gan.data.nifti import write_nifti

SPACING = (1.5, 1.5, 2.5)
LIVER_HU = 110.0
VESSEL_HU = 220.0
# How patient N is stored, cycling over N: (axis codes, how the HU are stored).
STORAGE = (("RAS", "int16"), ("LPS", "uint16+1024"), ("LPI", "float32"))


def liver_volume(
    seed: int = 0, shape: tuple[int, int, int] = (64, 56, 32), tumor: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """(HU float32, labels int8) in RAS+: an ellipsoid liver of LIVER_HU with noise, two bright
    vessels through it and, with ``tumor``, an existing hypodense tumor (label 2)."""
    rng = np.random.default_rng(seed)
    x, y, z = np.meshgrid(*[np.arange(n) * step for n, step in zip(shape, SPACING)], indexing="ij")
    centre = [n * step / 2 for n, step in zip(shape, SPACING)]
    liver = ((x - centre[0]) / 40) ** 2 + ((y - centre[1]) / 34) ** 2 + ((z - centre[2]) / 34) ** 2 < 1
    hu = np.where(liver, LIVER_HU, -80.0) + rng.normal(0.0, 12.0, shape)
    labels = liver.astype(np.int8)
    vessels = liver & (
        ((x - centre[0] - 12) ** 2 + (y - centre[1]) ** 2 < 9) | ((y - centre[1] + 14) ** 2 + (z - centre[2]) ** 2 < 9)
    )
    hu[vessels] = VESSEL_HU
    if tumor:
        existing = liver & ((x - centre[0] + 20) ** 2 + (y - centre[1] - 10) ** 2 + (z - centre[2]) ** 2 < 49)
        hu[existing], labels[existing] = 60.0, 2
    return hu.astype(np.float32), labels


def write_liver_dataset(root: Path, patients: Iterable[int], liver: bool = True) -> Path:
    """A LiTS folder of ``liver_volume`` patients (every second with a tumor), stored as STORAGE says;
    with ``liver=False`` the segmentations are empty."""
    root.mkdir(parents=True, exist_ok=True)
    for patient in patients:
        hu, labels = liver_volume(seed=patient, tumor=patient % 2 == 0)
        axcodes, storage = STORAGE[patient % len(STORAGE)]
        stored_hu, affine = reorient(np.rint(hu), axcodes, SPACING)
        stored_labels, _ = reorient(labels.astype(np.uint8) if liver else np.zeros_like(labels, np.uint8), axcodes, SPACING)
        volume = root / f"volume-{patient}.nii.gz"
        if storage == "uint16+1024":
            write_nifti(volume, (stored_hu + 1024).astype(np.uint16), affine, slope=1.0, inter=-1024.0)
        else:
            write_nifti(volume, stored_hu.astype(storage), affine)
        write_nifti(root / f"segmentation-{patient}.nii.gz", stored_labels, affine)
    return root
