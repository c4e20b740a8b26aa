"""Mass effect: a growing tumor pushes the liver round it outward. The liver within a zone round
the lesion is resampled from points nearer the lesion's centre, so its texture and vessels are
displaced by up to ``push_mm`` at the lesion's edge, fading to nothing ``zone_mm`` further out."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def push_liver(
    hu: np.ndarray,
    movable: np.ndarray,
    lesion: np.ndarray,
    points: np.ndarray,
    centre: np.ndarray,
    spacing: tuple[float, float, float],
    push_mm: float,
    zone_mm: float,
) -> np.ndarray:
    """Warp ``hu`` (a crop, changed in place) where ``movable`` lies within the zone round ``lesion``;
    ``points`` (3, ...) are the crop's voxel centres in mm, ``centre`` the lesion's. Returns the zone."""
    zone = np.zeros(hu.shape, dtype=bool)
    if push_mm <= 0 or zone_mm <= 0 or not lesion.any():
        return zone
    radius = (3.0 * np.count_nonzero(lesion) * float(np.prod(spacing)) / (4.0 * np.pi)) ** (1.0 / 3.0)
    relative = points - centre.reshape(3, 1, 1, 1)
    distance = np.sqrt((relative**2).sum(axis=0))
    weight = np.clip(1.0 - (distance - radius) / zone_mm, 0.0, 1.0)
    weight = weight * weight * (3 - 2 * weight)  # smoothstep: no crease at the zone's outer edge
    zone = movable & ~lesion & (weight > 0)
    shift = push_mm * weight[zone] / np.maximum(distance[zone], 1e-3)
    origin = points[:, 0, 0, 0]
    source = np.stack(
        [(points[axis][zone] - shift * relative[axis][zone] - origin[axis]) / spacing[axis] for axis in range(3)]
    )
    hu[zone] = ndimage.map_coordinates(hu, source, order=1, mode="nearest")
    return zone
