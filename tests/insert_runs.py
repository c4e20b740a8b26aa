"""Insert runs crafted by hand, exactly as the insert tool's contract says it writes them: real
LiTS-format patients, and a run dir with ``.hydra/config.yaml`` (a ``dataset`` node and ``seed``)
and, per patient that got lesions, its volume with a painted tumor and label 2 where HU changed."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
from nifti_factory import SHAPE, reorient, synthetic_anatomy, write_case
from omegaconf import OmegaConf

from liver_gan.data.dataset import split_patients

PATIENTS = range(1, 9)  # patients 3 and 6 have no real tumor (every third, as write_lits_dataset)
PAINTED_SLICES = range(3, 6)  # liver slices below the real lesion (slices 6-8): healthy in every patient
PAINTED_HU = 150.0  # brighter than the liver (60 HU), so that the painted tumor is plain to see


def real_patient(patient: int) -> tuple[np.ndarray, np.ndarray]:
    return synthetic_anatomy(seed=patient, tumor=patient % 3 != 0)


def write_real_dataset(root: Path, patients: Iterable[int] = PATIENTS) -> Path:
    for patient in patients:
        hu, labels = real_patient(patient)
        (stored, affine), (stored_labels, _) = reorient(hu, "RAS"), reorient(labels, "RAS")
        write_case(root / f"volume-{patient}.nii.gz", root / f"segmentation-{patient}.nii.gz", stored, stored_labels, affine)
    return root


def painted(patient: int, radius: float = 4.5) -> tuple[np.ndarray, np.ndarray]:
    """The patient's volume with a disc of tumor in ``PAINTED_SLICES``, labelled 2 where HU changed."""
    hu, labels = real_patient(patient)
    x, y, z = np.meshgrid(*(np.arange(size) for size in SHAPE), indexing="ij")
    lesion = ((x - 0.68 * SHAPE[0]) ** 2 + (y - 0.55 * SHAPE[1]) ** 2 <= radius**2) & np.isin(z, PAINTED_SLICES)
    lesion &= labels == 1
    hu, labels = hu.copy(), labels.copy()
    hu[lesion] += PAINTED_HU
    labels[lesion] = 2
    return hu, labels


def dataset_node(real_root: Path, cache_dir: Path, **options: object) -> dict:
    return {"name": "lits", "root": str(real_root), "resolution": 32, "val_fraction": 0.25,
            "cache_dir": str(cache_dir), "num_workers": 1, **options}


def split(seed: int, val_fraction: float = 0.25) -> tuple[list[int], list[int]]:
    """The (train, val) patients that prepare_dataset's split gives these patients with ``seed``."""
    return split_patients({patient: patient % 3 != 0 for patient in PATIENTS}, val_fraction, seed)


def write_insert_run(run_dir: Path, dataset: dict, seed: int, patients: Iterable[int]) -> Path:
    """An insert run dir with painted volumes of ``patients`` and the Hydra record of ``dataset`` and ``seed``."""
    (run_dir / ".hydra").mkdir(parents=True)
    record = {"dataset": dataset, "lesion": {"shape": "ellipsoid"}, "seed": seed}
    OmegaConf.save(OmegaConf.create(record), run_dir / ".hydra" / "config.yaml")
    for patient in patients:
        hu, labels = painted(patient)
        (stored, affine), (stored_labels, _) = reorient(hu, "RAS"), reorient(labels, "RAS")
        write_case(run_dir / f"volume-{patient}.nii.gz", run_dir / f"segmentation-{patient}.nii.gz", stored, stored_labels, affine)
    return run_dir
