"""``lesion.fit_from``: the HU contrast and size distribution of a dataset's own labelled tumors,
measured the way the defaults were measured on LiTS patient 117. The count per patient stays the
user's (lesion.count_min / count_max): a LiTS patient may hold dozens of metastases.

A tumor is a connected component of label 2 (in 3-D) at least ``lesion.diameter_mm_min`` across
(its sphere-equivalent diameter) with healthy liver round it: smaller pieces are annotation specks,
and a tumor with no liver to compare with says nothing of its contrast. A tumor's contrast is its
mean HU inside the label minus the median of the healthy liver round it (label 1, SHELL_MM from its
outline), and the fitted contrast the median over tumors: the same quantity the painter makes
equal to ``lesion.contrast_hu`` for every size (liver_gan/lesions/procedural.py), so a dataset
painted with a contrast gives it back. A patient-wide median of tumor voxels would instead weigh
the tumors by volume and compare them with liver far away.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
from scipy import ndimage

from liver_gan.data.labels import LIVER_LABEL, TUMOR_LABEL
from liver_gan.data.layouts import find_cases
from liver_gan.data.nifti import read_scan
from liver_gan.data.schema import Layout
from liver_gan.errors import LiverGanError
from liver_gan.lesions.config import ProceduralLesionConfig

Spacing = tuple[float, float, float]
# The liver a tumor is compared with: healthy liver from 2 to 6 mm outside its outline, past the
# partial-volume halo of its edge (lits117's labels: about 1 mm) and near enough to share its
# enhancement.
SHELL_MM = (2.0, 6.0)


@dataclasses.dataclass(frozen=True)
class TumorMeasure:
    """One labelled tumor: its sphere-equivalent diameter and its mean HU relative to the liver round it."""

    diameter_mm: float
    contrast_hu: float


def fit_options(
    cfg: ProceduralLesionConfig, folder: Path, layout: Layout, only: Sequence[int] | None = None
) -> tuple[ProceduralLesionConfig, dict[str, Any]]:
    """``cfg`` with contrast_hu and the diameter distribution measured on ``folder``'s tumors
    (of the patients ``only``, when given: the training patients when it is the dataset itself)."""
    cases = [case for case in find_cases(folder, layout) if only is None or case.patient_id in set(only)]
    contrasts, diameters, counts = [], [], []
    for case in cases:
        scan = read_scan(case.volume, case.segmentation)
        found = measure_tumors(scan.stored * np.float32(scan.slope) + np.float32(scan.inter), scan.labels,
                               scan.spacing, cfg.diameter_mm_min)
        if found:
            contrasts += [tumor.contrast_hu for tumor in found]
            diameters += [tumor.diameter_mm for tumor in found]
            counts.append(len(found))
    if not diameters:
        raise LiverGanError(
            f"lesion.fit_from={folder}: no labelled tumor (label 2) of lesion.diameter_mm_min="
            f"{cfg.diameter_mm_min:g} mm or more in its {len(cases)} patients; point it at a dataset with tumor labels"
        )
    logs = np.log(diameters)
    fitted = dataclasses.replace(
        cfg,
        contrast_hu=float(np.median(contrasts)),
        diameter_mm_median=float(np.exp(logs.mean())),
        diameter_mm_sigma=float(logs.std()),
        diameter_mm_max=float(max(diameters)),
    )
    keys = ("contrast_hu", "diameter_mm_median", "diameter_mm_sigma", "diameter_mm_max")
    measured = {key: getattr(fitted, key) for key in keys}
    tumors = {"patients": len(counts), "tumors": len(diameters), "tumors_per_patient": [min(counts), max(counts)]}
    return fitted, {"folder": str(folder), **tumors, **measured}


def measure_tumors(hu: np.ndarray, labels: np.ndarray, spacing: Spacing, min_diameter_mm: float) -> list[TumorMeasure]:
    """Every labelled tumor of one patient at least ``min_diameter_mm`` across with healthy liver
    round it (none without tumors or liver)."""
    return [
        TumorMeasure(near.diameter_mm, float(hu[near.box][near.tumor].mean() - np.median(hu[near.box][near.shell])))
        for near in tumor_surroundings(labels, spacing) if near.diameter_mm >= min_diameter_mm
    ]


@dataclasses.dataclass(frozen=True)
class TumorSurroundings:
    """One labelled tumor and the liver it is compared with, over a box of the volume round it."""

    box: tuple[slice, ...]
    tumor: np.ndarray  # bool over box
    outside_mm: np.ndarray  # distance of each voxel outside the tumor from it (0 inside)
    shell: np.ndarray  # bool over box: healthy liver SHELL_MM from the outline
    diameter_mm: float  # of the sphere of its volume


def tumor_surroundings(labels: np.ndarray, spacing: Spacing) -> Iterator[TumorSurroundings]:
    """Each 3-D component of label 2 that has healthy liver round it."""
    components, _ = ndimage.label(labels == TUMOR_LABEL)
    for number, box in enumerate(ndimage.find_objects(components), start=1):
        box = grown_box(box, SHELL_MM[1], spacing, labels.shape)
        tumor = components[box] == number
        outside = ndimage.distance_transform_edt(~tumor, sampling=spacing)
        shell = (labels[box] == LIVER_LABEL) & (outside > SHELL_MM[0]) & (outside <= SHELL_MM[1])
        if shell.any():
            diameter = float((6 * np.count_nonzero(tumor) * math.prod(spacing) / math.pi) ** (1 / 3))
            yield TumorSurroundings(box, tumor, outside, shell, diameter)


def grown_box(box: tuple[slice, ...], margin_mm: float, spacing: Spacing, shape: tuple[int, ...]) -> tuple[slice, ...]:
    """``box`` grown by ``margin_mm`` (and one voxel) on every side, within ``shape``."""
    pads = [int(math.ceil(margin_mm / step)) + 1 for step in spacing]
    return tuple(slice(max(s.start - p, 0), min(s.stop + p, n)) for s, p, n in zip(box, pads, shape))
