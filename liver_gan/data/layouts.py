"""Find the volume / segmentation pairs of a dataset on disk, one :class:`Case` per patient.

Two release layouts are understood:

- LiTS: ``volume-N.nii[.gz]`` and ``segmentation-N.nii[.gz]`` anywhere below the root (the
  official download splits them over "Training Batch 1" and "Training Batch 2");
- MSD Task03_Liver: ``imagesTr/liver_N.nii.gz`` with ``labelsTr/liver_N.nii.gz`` (``imagesTs/``
  has no labels and is ignored).

Patients are paired and ordered by their numeric id (volume-130 comes after volume-28). The
``._*`` files that macOS tarballs carry (the official MSD one does) are ignored. Symlinked
folders are followed (data is often linked in from a shared store), each real folder once.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from liver_gan.data.schema import Layout
from liver_gan.errors import LiverGanError

log = logging.getLogger(__name__)

NIFTI_SUFFIX = r"\.nii(?:\.gz)?"
LITS_VOLUME = re.compile(rf"volume-(\d+){NIFTI_SUFFIX}")
LITS_SEGMENTATION = re.compile(rf"segmentation-(\d+){NIFTI_SUFFIX}")
MSD_CASE = re.compile(rf"liver_(\d+){NIFTI_SUFFIX}")


@dataclass(frozen=True)
class Case:
    """One patient: a CT volume and its segmentation."""

    patient_id: int
    volume: Path
    segmentation: Path


def find_cases(root: Path, layout: Layout, skip_bad: bool = False) -> list[Case]:
    """Every patient under ``root``, by patient id.

    A volume without its segmentation (or the reverse) stops with an error, or with
    ``skip_bad`` is left out with a logged warning.
    """
    root = Path(root)
    if not root.is_dir():
        raise LiverGanError(f"dataset.root {root} does not exist or is not a directory: point dataset.root at the data")
    if layout is Layout.msd:
        volumes, segmentations = _msd_files(root)
    else:
        files = list(files_below(root, skip_bad))
        volumes = _by_patient(files, LITS_VOLUME)
        segmentations = _by_patient(files, LITS_SEGMENTATION)
    cases = _pair(volumes, segmentations, skip_bad)
    if not cases:
        raise LiverGanError(
            f"dataset.root {root}: found no volume/segmentation pairs of the {layout.value} layout; "
            f"check dataset.root and dataset.layout"
        )
    return cases


def files_below(root: Path, skip_bad: bool = False) -> Iterator[Path]:
    """Every file below ``root``, following symlinked folders (Python 3.11's ``rglob`` does not).

    A folder reached twice (a link back up the tree, or two links to one place) is read once.
    A folder that cannot be listed is an error naming it, or with ``skip_bad`` a warning.
    """

    def unlistable(error: OSError) -> None:
        problem = f"{error.filename}: cannot list this folder ({error.strerror})"
        if not skip_bad:
            raise LiverGanError(f"{problem}; make it readable, or move it out of dataset.root")
        log.warning("leaving out %s (dataset.skip_bad=true)", problem)

    seen: set[tuple[int, int]] = set()
    for folder, subfolders, names in os.walk(root, onerror=unlistable, followlinks=True):
        identity = os.stat(folder)
        if (identity.st_dev, identity.st_ino) in seen:
            subfolders.clear()
            continue
        seen.add((identity.st_dev, identity.st_ino))
        yield from (Path(folder) / name for name in names)


def _msd_files(root: Path) -> tuple[dict[int, Path], dict[int, Path]]:
    """imagesTr/ and labelsTr/ of Task03_Liver; ``root`` may also be the folder holding it."""
    task = root if (root / "imagesTr").is_dir() else root / "Task03_Liver"
    if not (task / "imagesTr").is_dir() or not (task / "labelsTr").is_dir():
        raise LiverGanError(
            f"dataset.root {root}: no imagesTr/ and labelsTr/ folders; point dataset.root at the Task03_Liver folder"
        )
    return (
        _by_patient((task / "imagesTr").iterdir(), MSD_CASE),
        _by_patient((task / "labelsTr").iterdir(), MSD_CASE),
    )


def _by_patient(paths: Iterable[Path], pattern: re.Pattern) -> dict[int, Path]:
    """Files whose whole name matches ``pattern``, by patient id; a patient twice is an error."""
    found: dict[int, Path] = {}
    for path in sorted(paths):
        match = pattern.fullmatch(path.name)
        if match is None or not path.is_file():
            continue
        patient_id = int(match.group(1))
        if patient_id in found:
            raise LiverGanError(
                f"{path}: patient {patient_id} also has {found[patient_id]}; keep one of the two files"
            )
        found[patient_id] = path
    return found


def _pair(volumes: dict[int, Path], segmentations: dict[int, Path], skip_bad: bool) -> list[Case]:
    cases = []
    for patient_id in sorted(volumes.keys() | segmentations.keys()):
        volume, segmentation = volumes.get(patient_id), segmentations.get(patient_id)
        if volume is not None and segmentation is not None:
            cases.append(Case(patient_id, volume, segmentation))
            continue
        problem = (
            f"{volume}: volume has no segmentation file for patient {patient_id}; add it or remove the volume"
            if segmentation is None
            else f"{segmentation}: segmentation has no volume file for patient {patient_id}; add it or remove it"
        )
        if not skip_bad:
            raise LiverGanError(problem)
        log.warning("skipping patient %d (dataset.skip_bad=true): %s", patient_id, problem)
    return cases
