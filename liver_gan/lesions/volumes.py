"""A source patient read for painting and written back in its own geometry: same shape, affine,
orientation, dtype and HU scaling, only the painted voxels' stored values changed."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import nibabel as nib
import numpy as np
from nibabel.orientations import apply_orientation, axcodes2ornt, inv_ornt_aff, io_orientation, ornt_transform

from liver_gan.atomic import TEMPORARY_SUFFIX
from liver_gan.data.layouts import Case
from liver_gan.data.nifti import CTScan, read_scan, write_nifti
from liver_gan.errors import LiverGanError

CANONICAL = axcodes2ornt(("R", "A", "S"))


@dataclass(frozen=True)
class SourcePatient:
    case: Case
    scan: CTScan  # canonical views of the stored voxels and labels
    affine: np.ndarray  # the file's
    orientation: np.ndarray  # file axes -> canonical
    scaled: bool  # whether the volume's header has scl_slope / scl_inter
    segmentation_dtype: np.dtype
    file_shape: tuple[int, ...]

    @property
    def hu(self) -> np.ndarray:
        """The whole volume in HU, float32, canonical."""
        return (self.scan.stored * np.float32(self.scan.slope) + np.float32(self.scan.inter)).astype(np.float32)

    def canonical_affine(self) -> np.ndarray:
        """Voxel-to-world of the canonical arrays."""
        return self.affine @ inv_ornt_aff(self.orientation, self.file_shape)

    def file_index(self, canonical: tuple[int, int, int]) -> tuple[int, int, int]:
        """A canonical voxel index as the index into the written file's array."""
        world = self.canonical_affine() @ np.array([*canonical, 1.0])
        index = np.linalg.solve(self.affine, world)[:3]
        return tuple(int(round(float(v))) for v in index)


def read_patient(case: Case) -> SourcePatient:
    """Read and check both files (liver_gan/data/nifti.py), keeping what writing them back needs."""
    scan = read_scan(case.volume, case.segmentation)
    volume = nib.load(str(case.volume))
    segmentation = nib.load(str(case.segmentation))
    slope, _ = volume.header.get_slope_inter()
    return SourcePatient(
        case, scan, volume.affine.copy(), io_orientation(volume.affine), slope is not None,
        segmentation.get_data_dtype(), tuple(volume.shape),
    )


def to_stored(
    patient: SourcePatient, hu: np.ndarray, changed: np.ndarray, tumor: np.ndarray, towards: float
) -> np.ndarray:
    """The canonical stored voxels with ``changed`` replaced by ``hu`` in the file's dtype and scaling.

    A ``tumor`` voxel that would store as before moves one stored unit ``towards`` (the sign of the
    contrast), so that every painted voxel differs in the file and label 2 marks exactly what changed.
    """
    stored = np.array(patient.scan.stored)
    dtype = stored.dtype
    values = (hu[changed] - patient.scan.inter) / patient.scan.slope
    if dtype.kind in "iu":
        values = np.rint(values)
    same = (values.astype(dtype) == stored[changed]) & tumor[changed]
    values[same] += -1.0 if towards <= 0 else 1.0
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        values = np.clip(values, info.min, info.max)
    stored[changed] = values.astype(dtype)
    return stored


def write_patient(patient: SourcePatient, stored: np.ndarray, labels: np.ndarray, run_dir: Path) -> tuple[Path, Path]:
    """``volume-N.nii.gz`` and ``segmentation-N.nii.gz`` in ``run_dir``, in the source's orientation."""
    back = ornt_transform(CANONICAL, patient.orientation)
    slope = patient.scan.slope if patient.scaled else None
    number = patient.case.patient_id
    volume = _write_new(run_dir / f"volume-{number}.nii.gz",
                        lambda path: write_nifti(path, apply_orientation(stored, back), patient.affine, slope, patient.scan.inter))
    segmentation = _write_new(run_dir / f"segmentation-{number}.nii.gz",
                              lambda path: write_nifti(path, apply_orientation(labels, back).astype(patient.segmentation_dtype), patient.affine))
    return volume, segmentation


def _write_new(path: Path, write: Callable[[Path], object]) -> Path:
    """Write ``path`` through a temporary beside it (nibabel needs the .nii.gz name, so the temporary
    is a folder); an existing file is never replaced."""
    if path.exists():
        raise LiverGanError(f"{path} already exists: liver-gan-insert never replaces files; give it a new hydra.run.dir")
    folder = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX, dir=path.parent))
    try:
        write(folder / path.name)
        os.replace(folder / path.name, path)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return path
