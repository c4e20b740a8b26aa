"""Where the phantom is drawn: the voxel grid in millimetres, cross-section outlines, and the
smooth random fields that give organs their texture and vessels their shape."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage

from liver_gan.data.schema import PhantomConfig

# Millimetres: one number, or one per slice as a (1, 1, Z) array that broadcasts over the grid.
Size = float | np.ndarray


@dataclass(frozen=True)
class Grid:
    """Voxel centres in millimetres, shaped to broadcast to an (x, y, z) block of slices."""

    x: np.ndarray  # (X, 1, 1), + towards the patient's right
    y: np.ndarray  # (1, Y, 1), + anterior
    z: np.ndarray  # (1, 1, Z), + superior
    u: np.ndarray  # (1, 1, Z), 0 at the scan's lowest slice, 1 at its highest
    spacing: tuple[float, float, float]

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.x.shape[0], self.y.shape[1], self.z.shape[2])

    def slab(self, bottom: float, top: float) -> tuple[Grid, slice]:
        """The slices with ``bottom <= u <= top``: organs are drawn only where they can be."""
        inside = np.flatnonzero((self.u[0, 0] >= bottom) & (self.u[0, 0] <= top))
        if inside.size == 0:
            return replace(self, z=self.z[:, :, :0], u=self.u[:, :, :0]), slice(0, 0)
        slices = slice(int(inside[0]), int(inside[-1]) + 1)
        return replace(self, z=self.z[:, :, slices], u=self.u[:, :, slices]), slices

    def crop(self, box: tuple[slice, slice, slice]) -> Grid:
        """The voxels inside the bounding box ``box``."""
        x, y, z = box
        return replace(self, x=self.x[x], y=self.y[:, y], z=self.z[:, :, z], u=self.u[:, :, z])

    def affine(self) -> np.ndarray:
        """The RAS+ voxel-to-world matrix."""
        affine = np.diag([*self.spacing, 1.0])
        affine[:3, 3] = [self.x[0, 0, 0], self.y[0, 0, 0], self.z[0, 0, 0]]
        return affine


def sample_grid(rng: np.random.Generator, cfg: PhantomConfig) -> Grid:
    """A 340-400 mm field of view over ``in_plane`` pixels and 2.5-5 mm slices."""
    size = cfg.in_plane
    slices = int(rng.integers(cfg.min_slices, cfg.max_slices + 1))
    pixel = round(rng.uniform(340.0, 400.0) / size, 4)
    thickness = float(np.clip(round(rng.uniform(250.0, 320.0) / slices * 2) / 2, 2.5, 5.0))
    centres = (np.arange(size) - (size - 1) / 2) * pixel
    z = round(rng.uniform(-650.0, -350.0), 1) + np.arange(slices) * thickness
    return Grid(
        x=centres.reshape(-1, 1, 1).astype(np.float32),
        y=centres.reshape(1, -1, 1).astype(np.float32),
        z=z.reshape(1, 1, -1).astype(np.float32),
        u=np.linspace(0.0, 1.0, slices, dtype=np.float32).reshape(1, 1, -1),
        spacing=(pixel, pixel, thickness),
    )


@dataclass(frozen=True)
class Outline:
    """A rounded-rectangle (superellipse) cross-section per slice, flatter at the back.

    The body's outline and every layer inside it (fat, muscle wall, abdominal cavity).
    Sizes are (1, 1, Z) arrays over the whole scan; ``level`` picks the slab's slices.
    """

    cx: float
    cy: float
    half_width: np.ndarray  # mm
    anterior: np.ndarray  # mm from the centre to the front
    posterior: np.ndarray  # mm from the centre to the back
    power: float = 2.4

    def inset(self, lateral: float, anterior: float, posterior: float) -> Outline:
        return replace(
            self,
            half_width=self.half_width - lateral,
            anterior=self.anterior - anterior,
            posterior=self.posterior - posterior,
        )

    def toward(self, inner: Outline, fraction: float) -> Outline:
        """The outline ``fraction`` of the way from this one to ``inner``."""
        return replace(
            self,
            half_width=self.half_width + fraction * (inner.half_width - self.half_width),
            anterior=self.anterior + fraction * (inner.anterior - self.anterior),
            posterior=self.posterior + fraction * (inner.posterior - self.posterior),
        )

    def level(self, grid: Grid, slices: slice = slice(None)) -> np.ndarray:
        """``radius ** power``: below 1 inside, 1 on the outline (cheaper than the radius)."""
        across = (np.abs(grid.x - self.cx) / self.half_width[:, :, slices]) ** self.power
        along = grid.y - self.cy
        extent = np.where(along >= 0, self.anterior[:, :, slices], self.posterior[:, :, slices])
        return across + (np.abs(along) / extent) ** self.power

    def inside(self, grid: Grid, slices: slice = slice(None)) -> np.ndarray:
        return self.level(grid, slices) < 1.0


def ellipse(grid: Grid, cx: Size, cy: Size, half_x: Size, half_y: Size) -> np.ndarray:
    """``((x - cx) / half_x) ** 2 + ((y - cy) / half_y) ** 2``: below 1 inside."""
    return ((grid.x - cx) / half_x) ** 2 + ((grid.y - cy) / half_y) ** 2


def segment_distance(
    points: tuple[np.ndarray, ...], start: Sequence[float], end: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Distance from broadcastable ``points`` to the segment ``start``-``end``, and how far
    along it (0..1) the nearest point lies."""
    axis = np.subtract(end, start, dtype=np.float64)
    length2 = max(float(axis @ axis), 1e-9)
    offsets = [p - s for p, s in zip(points, start)]
    along = np.clip(sum(o * a for o, a in zip(offsets, axis)) / length2, 0.0, 1.0)
    return np.sqrt(sum((o - along * a) ** 2 for o, a in zip(offsets, axis))), along


def bump(u: np.ndarray, bottom: float, top: float, sharpness: float = 0.5) -> np.ndarray:
    """0 outside [bottom, top], 1 in the middle: how an organ's size changes along z.

    ``sharpness`` below 1 gives round ends (a liver dome, a kidney pole), above 1 a tip.
    """
    t = np.clip((u - bottom) / (top - bottom), 0.0, 1.0)
    return np.clip(np.sin(np.pi * t), 0.0, 1.0) ** sharpness


def smooth_noise(rng: np.random.Generator, grid: Grid, feature_mm: float) -> np.ndarray:
    """Zero-mean unit-variance noise with detail of about ``feature_mm``, on ``grid`` (float32).

    Organ texture, wavy outlines, bowel loops. Fine detail is white noise blurred in place;
    coarse detail is white noise on a coarse lattice blended separably with Gaussian weights
    (normalised so the variance is 1 everywhere), which costs far less than a wide blur.
    """
    if 0 in grid.shape:  # an organ's slab can be empty in a scan of very few slices
        return np.zeros(grid.shape, dtype=np.float32)
    if feature_mm / 4.0 < 2.5 * grid.spacing[0]:
        sigma = [feature_mm / 4.0 / step for step in grid.spacing]
        noise = ndimage.gaussian_filter(rng.standard_normal(grid.shape, dtype=np.float32), sigma)
        return noise / max(float(noise.std()), 1e-6)
    steps = [max(feature_mm / 4.0, step) for step in grid.spacing]
    cells = [math.ceil(n * s / h) + 7 for n, s, h in zip(grid.shape, grid.spacing, steps)]
    weights = [
        _blend_weights(n, step, lattice, count)
        for n, step, lattice, count in zip(grid.shape, grid.spacing, steps, cells)
    ]
    noise = rng.standard_normal(cells, dtype=np.float32) @ weights[2].T  # z first: smallest
    noise = weights[1] @ noise
    return (weights[0] @ noise.reshape(cells[0], -1)).reshape(grid.shape)


def _blend_weights(size: int, step: float, lattice: float, cells: int) -> np.ndarray:
    fine = np.arange(size) * step
    coarse = (np.arange(cells) - 3) * lattice
    weights = np.exp(-0.5 * ((fine[:, None] - coarse[None, :]) / lattice) ** 2)
    return (weights / np.sqrt((weights**2).sum(axis=1, keepdims=True))).astype(np.float32)


def vessel_network(
    rng: np.random.Generator, grid: Grid, feature_mm: float, width: float
) -> np.ndarray:
    """Random branching vessels: where two independent smooth noise fields are both near zero.

    The crossing of two wavy surfaces is a wavy curve, so axial slices show the dots, ovals
    and short branches of real vessels; ``width`` (in noise standard deviations) sets their
    calibre.
    """
    width *= (grid.spacing[0] / 2.0) ** 0.3  # keep small vessels visible on coarse pixels
    first = np.abs(smooth_noise(rng, grid, feature_mm)) < width
    return first & (np.abs(smooth_noise(rng, grid, feature_mm)) < width)


def grow(mask: np.ndarray, grid: Grid, mm: float) -> np.ndarray:
    """``mask`` grown by ``mm`` within each slice (a square reach: cheap, and fine for margins)."""
    reach = max(1, round(mm / grid.spacing[0]))
    grown = mask
    for axis in (0, 1):
        source, grown = grown, grown.copy()
        for shift in range(1, reach + 1):
            ahead = tuple(slice(shift, None) if a == axis else slice(None) for a in range(3))
            behind = tuple(slice(None, -shift) if a == axis else slice(None) for a in range(3))
            grown[ahead] |= source[behind]
            grown[behind] |= source[ahead]
    return grown


def angle_from_back(grid: Grid, cx: float, cy: float) -> np.ndarray:
    """Angle around the trunk, the same on both sides: 0 behind the spine, pi at the front."""
    return np.arctan2(np.abs(grid.x - cx), cy - grid.y)
