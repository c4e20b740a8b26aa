"""What the scanner makes of the drawn anatomy: blur, correlated noise, padding, int16 storage."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from liver_gan.data.phantom.body import Canvas

PADDING_HU = -1024.0  # outside the reconstruction circle, where scanners store no measurement


def acquire(canvas: Canvas, rng: np.random.Generator) -> np.ndarray:
    """What the scanner makes of the drawn anatomy: a slight blur (the point-spread function),
    noise of 10-15 HU correlated over neighbouring pixels, padding outside the reconstructed
    circle, and int16 storage."""
    grid = canvas.grid
    pixel = grid.spacing[0]
    hu = ndimage.gaussian_filter(canvas.hu, sigma=(max(0.35, 0.9 / pixel),) * 2 + (0.0,))
    noise = rng.standard_normal(grid.shape, dtype=np.float32)
    noise = ndimage.gaussian_filter(noise, sigma=(0.6, 0.6, 0.0))
    hu += noise * (rng.uniform(10.0, 15.0) / float(noise.std()))
    outside = grid.x**2 + grid.y**2 > (pixel * grid.shape[0] / 2) ** 2
    hu[np.broadcast_to(outside, hu.shape)] = PADDING_HU
    return np.clip(np.rint(hu), PADDING_HU, 3071).astype(np.int16)
