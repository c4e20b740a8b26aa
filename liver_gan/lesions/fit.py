"""``lesion.fit_from``: the HU contrast and size distribution of a dataset's own labelled tumors,
measured the way the defaults were measured on LiTS patient 117. The count per patient stays the
user's (lesion.count_min / count_max): a LiTS patient may hold dozens of metastases.

A tumor is a connected component of label 2 (in 3-D) at least ``lesion.diameter_mm_min`` across
(its sphere-equivalent diameter): smaller pieces are annotation specks. The contrast is each
patient's median tumor HU minus its median healthy-liver HU, the median over patients.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from scipy import ndimage

from liver_gan.config import Layout
from liver_gan.data.labels import LIVER_LABEL, TUMOR_LABEL
from liver_gan.data.layouts import find_cases
from liver_gan.data.nifti import read_scan
from liver_gan.errors import LiverGanError
from liver_gan.lesions.config import ProceduralLesionConfig


def fit_options(
    cfg: ProceduralLesionConfig, folder: Path, layout: Layout, only: Sequence[int] | None = None
) -> tuple[ProceduralLesionConfig, dict[str, Any]]:
    """``cfg`` with contrast_hu and the diameter distribution measured on ``folder``'s tumors
    (of the patients ``only``, when given: the training patients when it is the dataset itself)."""
    cases = [case for case in find_cases(folder, layout) if only is None or case.patient_id in set(only)]
    contrasts, diameters, counts = [], [], []
    for case in cases:
        scan = read_scan(case.volume, case.segmentation)
        found = _tumors(scan.stored, scan.slope, scan.inter, scan.labels, scan.spacing, cfg.diameter_mm_min)
        if found is not None:
            contrasts.append(found[0])
            diameters += found[1]
            counts.append(len(found[1]))
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
    tumors = {"patients": len(contrasts), "tumors": len(diameters), "tumors_per_patient": [min(counts), max(counts)]}
    return fitted, {"folder": str(folder), **tumors, **measured}


def _tumors(
    stored: np.ndarray, slope: float, inter: float, labels: np.ndarray, spacing: tuple[float, float, float],
    min_diameter_mm: float,
) -> tuple[float, list[float]] | None:
    """(contrast HU, tumor diameters in mm) of one patient, or None without tumors or liver."""
    tumor = labels == TUMOR_LABEL
    liver = labels == LIVER_LABEL
    if not tumor.any() or not liver.any():
        return None
    components, count = ndimage.label(tumor)
    voxels = np.bincount(components.ravel())[1:]
    diameters = [d for d in (6 * voxels * math.prod(spacing) / math.pi) ** (1 / 3) if d >= min_diameter_mm]
    if not diameters:
        return None
    tumor_hu = np.median(stored[tumor]) * slope + inter
    liver_hu = np.median(stored[liver]) * slope + inter
    return float(tumor_hu - liver_hu), [float(d) for d in diameters]
