"""A lesion's 3-D shape as a depth field: millimetres inside its surface (negative outside).

Depth, not a bare mask, so that shading can fade the edge and place a rim or a core by depth,
and so that the same field serves the phantom's lesions and the ones inserted into real CT.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def lesion_depth(
    points: np.ndarray,
    centre: np.ndarray,
    radius: float,
    rng: np.random.Generator,
    lobulation: float = 0.45,
    elongation: float = 0.25,
) -> np.ndarray:
    """Approximate depth (mm) inside a lesion at ``points`` (3, ...) in mm: an ellipsoid, or with
    probability ``lobulation`` a lobulated union of 2 to 4, each axis the lobe's size times a factor
    in [1 - elongation, 1 + elongation], randomly rotated."""
    lobes = 1 if rng.uniform() < 1.0 - lobulation else int(rng.integers(2, 5))
    depth = np.full(points.shape[1:], -np.inf, dtype=np.float32)
    for lobe in range(lobes):
        offset = np.zeros(3) if lobe == 0 else rng.normal(size=3) * 0.45 * radius
        size = radius * (1.0 if lobe == 0 else rng.uniform(0.45, 0.8))
        axes = size * rng.uniform(1.0 - elongation, 1.0 + elongation, size=3)
        relative = points - (centre + offset).reshape(3, *([1] * (points.ndim - 1)))
        local = np.tensordot(random_rotation(rng).T, relative, axes=1)
        radial = np.sqrt(sum((local[i] / axes[i]) ** 2 for i in range(3)))
        depth = np.maximum(depth, (1.0 - radial) * axes.min())
    return depth


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    """A uniformly random 3-D rotation (or reflection) matrix."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    return q * np.sign(np.diag(r))


def smooth_field(
    rng: np.random.Generator, shape: tuple[int, ...], spacing: tuple[float, ...], scale_mm: float
) -> np.ndarray:
    """Gaussian noise smoothed over ``scale_mm`` and rescaled to unit standard deviation (float32)."""
    noise = rng.standard_normal(shape).astype(np.float32)
    if scale_mm > 0:
        noise = ndimage.gaussian_filter(noise, [scale_mm / step for step in spacing], mode="reflect")
    return noise / max(float(noise.std()), 1e-6)


def elastic_points(
    points: np.ndarray, spacing: tuple[float, float, float], amplitude_mm: float, scale_mm: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """``points`` (3, X, Y, Z) displaced by a smooth random field: the elastic deformation that
    makes an ellipsoid's outline irregular."""
    if amplitude_mm <= 0:
        return points
    shape = points.shape[1:]
    return points + np.stack([amplitude_mm * smooth_field(rng, shape, spacing, scale_mm) for _ in range(3)])


def largest_component(mask: np.ndarray) -> np.ndarray:
    """Keep the largest connected piece: fragments cut off by other organs are dropped."""
    labels, count = ndimage.label(mask)
    if count <= 1:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == sizes.argmax()
