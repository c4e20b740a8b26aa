"""Where a lesion may go in one patient: healthy liver at a margin from the liver's edge, from
vessels (liver voxels brighter than the liver by a threshold) and from tumors, old and new.

Everything is computed on the liver's bounding box (plus the margins), in millimetres of the
volume's spacing, so that a 512 x 512 volume costs what its liver does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from liver_gan.data.labels import LIVER_LABEL, TUMOR_LABEL
from liver_gan.lesions.config import ProceduralLesionConfig


@dataclass
class LiverRegion:
    """The liver's box of a volume and the masks that placement works on, all over that box."""

    box: tuple[slice, slice, slice]
    liver: np.ndarray  # bool: healthy liver (label 1)
    vessels: np.ndarray  # bool: liver voxels above the vessel threshold
    allowed: np.ndarray  # bool: where a lesion voxel may be
    liver_hu: float  # median HU of the healthy liver


def liver_region(
    hu: np.ndarray, labels: np.ndarray, spacing: tuple[float, float, float], cfg: ProceduralLesionConfig
) -> LiverRegion | None:
    """The region lesions may take, or None when the volume has no healthy liver."""
    organ = labels >= LIVER_LABEL
    if not (labels == LIVER_LABEL).any():
        return None
    pad = [int(np.ceil((cfg.margin_mm + cfg.tumor_margin_mm) / step)) + 1 for step in spacing]
    found = ndimage.find_objects(organ.astype(np.int8))[0]
    box = tuple(slice(max(s.start - p, 0), min(s.stop + p, n)) for s, p, n in zip(found, pad, labels.shape))
    organ, inner_labels, inner_hu = organ[box], labels[box], hu[box]
    liver = inner_labels == LIVER_LABEL
    liver_hu = float(np.median(inner_hu[liver]))
    vessels = liver & (inner_hu > liver_hu + cfg.vessel_above_liver_hu)
    allowed = (
        liver
        & (ndimage.distance_transform_edt(organ, sampling=spacing) > cfg.margin_mm)
        & _farther_than(inner_labels == TUMOR_LABEL, cfg.tumor_margin_mm, spacing)
        & _farther_than(vessels, cfg.vessel_margin_mm, spacing)
    )
    return LiverRegion(box, liver, vessels, allowed, liver_hu)


def _farther_than(mask: np.ndarray, distance_mm: float, spacing: tuple[float, float, float]) -> np.ndarray:
    """Voxels more than ``distance_mm`` from every voxel of ``mask`` (all of them if it is empty)."""
    if not mask.any():
        return np.ones(mask.shape, dtype=bool)
    return ndimage.distance_transform_edt(~mask, sampling=spacing) > distance_mm


def clearance(allowed: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """Distance (mm) from each allowed voxel to the nearest voxel that is not: the radius of the
    largest ball centred there that stays where lesions may be."""
    return ndimage.distance_transform_edt(allowed, sampling=spacing)


def exclude_lesion(
    region: LiverRegion, painted: np.ndarray, cfg: ProceduralLesionConfig, spacing: tuple[float, float, float]
) -> None:
    """Keep later lesions ``tumor_margin_mm`` away from the ``painted`` ones (a mask over the box)."""
    region.allowed &= _farther_than(painted, cfg.tumor_margin_mm, spacing)
