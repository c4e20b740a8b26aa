"""The embedded default dataset: synthetic contrast-enhanced abdominal CT as LiTS-format NIfTI.

LiTS cannot be downloaded without registering, so ``dataset=phantom`` first writes a few
portal-venous abdominal CT volumes (``volume-N.nii.gz``, Hounsfield units) with their
segmentations (``segmentation-N.nii.gz``, uint8: 0 background, 1 liver, 2 tumor), then reads
them back through the same reader as real data.

Anatomy is drawn in millimetres in RAS+ world coordinates: +x towards the patient's right,
+y anterior, +z superior, so the liver lies at +x. Cranio-caudal positions of organs are
fractions ``u`` of the scanned range (0 at the lowest slice, 1 at the highest), so that any
slice count keeps slices below the liver (kidneys, bowel, pelvis) and above its dome (lungs,
heart). Volumes are stored the way real files come: some LPS, some with reversed slice
order, some as unsigned integers with ``scl_inter = -1024``.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, fields, replace
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.orientations import apply_orientation, axcodes2ornt, inv_ornt_aff, ornt_transform
from scipy import ndimage

from liver_gan.atomic import atomic_directory, build_lock
from liver_gan.config import PhantomConfig
from liver_gan.data.labels import BACKGROUND_LABEL, LIVER_LABEL, TUMOR_LABEL
from liver_gan.errors import LiverGanError

# Bump when the drawing changes, so that phantoms written by an older generator are not reused.
GENERATOR_VERSION = 1

AIR_HU = -1000.0
PADDING_HU = -1024.0  # outside the reconstruction circle, where scanners store no measurement
MIN_IN_PLANE = 48
MIN_SLICES = 8

# How volume N is stored, cycling over N, so that every path of the reader is exercised.
STORED_AXCODES = (("R", "A", "S"), ("L", "P", "S"), ("L", "P", "I"))
# Patients 1, 5, 9, ... have a healthy liver: LiTS has such patients, and so the phantom has
# them whatever the seed.
HEALTHY_PATIENT_EVERY = 4


def phantom_key(cfg: PhantomConfig) -> str:
    """A short hash of every phantom parameter and of the generator version."""
    params = {item.name: getattr(cfg, item.name) for item in fields(PhantomConfig)}
    params["generator_version"] = GENERATOR_VERSION
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]


def write_phantom(root: Path, cfg: PhantomConfig) -> Path:
    """Write (once) the phantom for ``cfg`` under ``root`` and return its directory.

    The directory is named by :func:`phantom_key`, built under a lock and renamed into place
    only when complete, so concurrent jobs of a sweep share one copy and never see half of one.
    """
    _check_config(cfg)
    directory = Path(root) / f"phantom-{phantom_key(cfg)}"
    if _is_complete(directory, cfg):
        return directory
    with build_lock(directory):
        if _is_complete(directory, cfg):
            return directory
        with atomic_directory(directory) as building:
            for index in range(cfg.num_volumes):
                _save_pair(building, index, synthesize_scan(cfg, index))
    return directory


def _check_config(cfg: PhantomConfig) -> None:
    if cfg.num_volumes < 1:
        raise LiverGanError(f"dataset.phantom.num_volumes={cfg.num_volumes}: set it to 1 or more")
    if cfg.in_plane < MIN_IN_PLANE:
        raise LiverGanError(
            f"dataset.phantom.in_plane={cfg.in_plane} is too small to draw the anatomy: "
            f"use at least {MIN_IN_PLANE}"
        )
    if cfg.min_slices < MIN_SLICES:
        raise LiverGanError(
            f"dataset.phantom.min_slices={cfg.min_slices} leaves the liver too few slices: "
            f"use at least {MIN_SLICES}"
        )
    if cfg.max_slices < cfg.min_slices:
        raise LiverGanError(
            f"dataset.phantom.max_slices={cfg.max_slices} is below "
            f"min_slices={cfg.min_slices}: raise max_slices"
        )


def _is_complete(directory: Path, cfg: PhantomConfig) -> bool:
    return all(
        (directory / f"{kind}-{index}.nii.gz").is_file()
        for index in range(cfg.num_volumes)
        for kind in ("volume", "segmentation")
    )


# ------------------------------------------------------------------------------------------
# Geometry


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

    def slab(self, bottom: float, top: float) -> tuple["Grid", slice]:
        """The slices with ``bottom <= u <= top``: organs are drawn only where they can be."""
        inside = np.flatnonzero((self.u[0, 0] >= bottom) & (self.u[0, 0] <= top))
        if inside.size == 0:
            return replace(self, z=self.z[:, :, :0], u=self.u[:, :, :0]), slice(0, 0)
        slices = slice(int(inside[0]), int(inside[-1]) + 1)
        return replace(self, z=self.z[:, :, slices], u=self.u[:, :, slices]), slices

    def crop(self, box: tuple[slice, slice, slice]) -> "Grid":
        """The voxels inside the bounding box ``box``."""
        x, y, z = box
        return replace(self, x=self.x[x], y=self.y[:, y], z=self.z[:, :, z], u=self.u[:, :, z])

    def affine(self) -> np.ndarray:
        """The RAS+ voxel-to-world matrix."""
        affine = np.diag([*self.spacing, 1.0])
        affine[:3, 3] = [self.x[0, 0, 0], self.y[0, 0, 0], self.z[0, 0, 0]]
        return affine


def _sample_grid(rng: np.random.Generator, cfg: PhantomConfig) -> Grid:
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

    def inset(self, lateral: float, anterior: float, posterior: float) -> "Outline":
        return replace(
            self,
            half_width=self.half_width - lateral,
            anterior=self.anterior - anterior,
            posterior=self.posterior - posterior,
        )

    def toward(self, inner: "Outline", fraction: float) -> "Outline":
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


def _ellipse(grid: Grid, cx, cy, half_x, half_y) -> np.ndarray:
    """``((x - cx) / half_x) ** 2 + ((y - cy) / half_y) ** 2``: below 1 inside."""
    return ((grid.x - cx) / half_x) ** 2 + ((grid.y - cy) / half_y) ** 2


def _segment_distance(
    points: tuple[np.ndarray, ...], start, end
) -> tuple[np.ndarray, np.ndarray]:
    """Distance from broadcastable ``points`` to the segment ``start``-``end``, and how far
    along it (0..1) the nearest point lies."""
    axis = np.subtract(end, start, dtype=np.float64)
    length2 = max(float(axis @ axis), 1e-9)
    offsets = [p - s for p, s in zip(points, start)]
    along = np.clip(sum(o * a for o, a in zip(offsets, axis)) / length2, 0.0, 1.0)
    return np.sqrt(sum((o - along * a) ** 2 for o, a in zip(offsets, axis))), along


def _bump(u: np.ndarray, bottom: float, top: float, sharpness: float = 0.5) -> np.ndarray:
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


def _grow(mask: np.ndarray, grid: Grid, mm: float) -> np.ndarray:
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


def _from_back(grid: Grid, cx: float, cy: float) -> np.ndarray:
    """Angle around the trunk, the same on both sides: 0 behind the spine, pi at the front."""
    return np.arctan2(np.abs(grid.x - cx), cy - grid.y)


# ------------------------------------------------------------------------------------------
# The drawing


@dataclass
class Canvas:
    """The volume being drawn, in HU, with what is already taken by an organ."""

    grid: Grid
    hu: np.ndarray
    occupied: np.ndarray

    def paint(
        self, mask: np.ndarray, value, slices: slice = slice(None), organ: bool = True
    ) -> None:
        """Set ``mask`` (over the slab ``slices``) to ``value``, a number or an array."""
        hu = self.hu[:, :, slices]
        mask = np.broadcast_to(mask, hu.shape)
        hu[mask] = value if np.ndim(value) == 0 else np.broadcast_to(value, hu.shape)[mask]
        if organ:
            self.occupied[:, :, slices] |= mask

    def free(self, slices: slice, margin_mm: float = 0.0) -> np.ndarray:
        """Not yet taken by an organ, keeping ``margin_mm`` of fat around those that are."""
        taken = self.occupied[:, :, slices]
        return ~(_grow(taken, self.grid, margin_mm) if margin_mm else taken)


@dataclass(frozen=True)
class Body:
    """The layers of the trunk and the landmarks every organ is placed against."""

    skin: Outline
    fat_inner: Outline  # inner surface of the subcutaneous fat
    cavity: Outline  # inner surface of the muscle wall
    spine_x: float
    spine_y: float  # centre of the vertebral bodies
    vertebra_width: np.ndarray  # (1, 1, Z) half-width
    vertebra_depth: np.ndarray  # (1, 1, Z) half-depth (antero-posterior)

    @property
    def prevertebral_y(self) -> float:
        """The front of the vertebral bodies, where the aorta and the IVC lie."""
        return self.spine_y + float(self.vertebra_depth.mean())

    @property
    def canal_y(self) -> float:
        return self.spine_y - float(self.vertebra_depth.mean()) - 9.0

    def width(self) -> float:
        """The cavity's typical half-width, for placing organs left and right."""
        return float(self.cavity.half_width.mean())

    def depth(self) -> tuple[float, float]:
        """The cavity's typical extent in front of and behind the centre."""
        return float(self.cavity.anterior.mean()), float(self.cavity.posterior.mean())


def _sample_body(rng: np.random.Generator, grid: Grid) -> Body:
    u = grid.u
    half_width = min(rng.uniform(135.0, 170.0), 0.43 * grid.spacing[0] * grid.shape[0])
    belly = rng.uniform(0.0, 0.12)
    skin = Outline(
        cx=rng.uniform(-8.0, 8.0),
        cy=rng.uniform(0.0, 15.0),
        # wider at the hips, and gently varying over the slices
        half_width=half_width
        * (1 + 0.05 * (1 - u) ** 2 + 0.02 * np.sin(2 * np.pi * (u + rng.uniform()))),
        anterior=rng.uniform(95.0, 120.0) * (1 + belly * np.sin(np.pi * u) ** 2),
        posterior=np.full_like(u, rng.uniform(82.0, 98.0)),
    )
    fat = rng.uniform([8.0, 8.0, 6.0], [34.0, 30.0, 20.0])  # lateral, anterior, posterior
    fat_inner = skin.inset(*fat)
    muscle = rng.uniform(7.0, 12.0)
    lumbar = 1 + 0.15 * (1 - u)  # lumbar vertebrae are bigger than the thoracic ones
    return Body(
        skin=skin,
        fat_inner=fat_inner,
        cavity=fat_inner.inset(muscle, 1.1 * muscle, 1.6 * muscle),
        spine_x=skin.cx + rng.uniform(-3.0, 3.0),
        spine_y=float(skin.cy - skin.posterior[0, 0, 0] + fat[2] + rng.uniform(64.0, 74.0)),
        vertebra_width=rng.uniform(19.0, 22.0) * lumbar,
        vertebra_depth=rng.uniform(14.0, 16.5) * lumbar,
    )


def _paint_body_wall(canvas: Canvas, body: Body, rng: np.random.Generator) -> None:
    """Skin, subcutaneous fat with its fascia, the muscle wall (split at the linea alba) and
    visceral fat threaded with small vessels."""
    grid = canvas.grid
    canvas.paint(body.skin.inside(grid), rng.uniform(20.0, 40.0), organ=False)
    fat_hu = rng.uniform(-110.0, -90.0)
    canvas.paint(body.skin.inset(2.0, 2.0, 2.0).inside(grid), fat_hu, organ=False)
    fascia = body.skin.toward(body.fat_inner, 0.45).level(grid)  # Scarpa's, a faint line
    canvas.paint(np.abs(fascia - 1.0) < 0.012, fat_hu + 60.0, organ=False)
    canvas.paint(body.fat_inner.inside(grid), rng.uniform(40.0, 55.0), organ=False)
    cavity = body.cavity.inside(grid)
    linea_alba = (np.abs(grid.x - body.skin.cx) < 3.0) & (grid.y > body.skin.cy) & ~cavity
    canvas.paint(linea_alba & body.skin.inset(3.0, 3.0, 3.0).inside(grid), fat_hu + 10, organ=False)
    strands = np.abs(smooth_noise(rng, grid, 25.0)) < 0.05
    visceral_hu = rng.uniform(-105.0, -85.0)
    canvas.paint(cavity, visceral_hu, organ=False)
    canvas.paint(cavity & strands, visceral_hu + rng.uniform(50.0, 90.0), organ=False)


def _paint_table(canvas: Canvas, body: Body, rng: np.random.Generator) -> None:
    """The scanner table under the patient's back: two thin shells around a foam core."""
    grid = canvas.grid
    top = body.skin.cy - body.skin.posterior[0, 0, 0] - rng.uniform(0.5, 3.0)
    depth = top + (grid.x - body.skin.cx) ** 2 / 1500.0 - grid.y  # below the curved top
    board = (depth > 0) & (depth < 30.0) & ~body.skin.inside(grid)
    canvas.paint(board, -900.0, organ=False)
    shell = max(2.0, grid.spacing[0])
    canvas.paint(board & ((depth < shell) | (depth > 30.0 - shell)), 150.0, organ=False)


def _paint_back_muscles(canvas: Canvas, body: Body, rng: np.random.Generator) -> None:
    """Erector spinae filling the gutters beside the spinous processes; psoas beside the
    lumbar vertebrae, growing towards the pelvis."""
    grid = canvas.grid
    muscle_hu = rng.uniform(42.0, 55.0)
    size = rng.uniform(0.9, 1.15)
    inside = body.fat_inner.inside(grid)
    lower, lower_slices = grid.slab(0.0, 0.6)
    for side in (-1.0, 1.0):
        erector = _ellipse(
            grid, body.spine_x + side * 26.0 * size, body.canal_y - 12.0, 21.0 * size, 18.0
        )
        canvas.paint((erector < 1.0) & inside, muscle_hu)
        radius = np.maximum(22.0 * size * (0.6 - lower.u) / 0.6, 1e-3)
        psoas = _ellipse(
            lower, body.spine_x + side * (body.vertebra_width[:, :, lower_slices] + 0.6 * radius),
            body.spine_y + 3.0, radius, 0.8 * radius,
        )
        canvas.paint(psoas < 1.0, muscle_hu, lower_slices)


def _paint_spine(canvas: Canvas, body: Body, rng: np.random.Generator) -> None:
    """Vertebral bodies (bright cortex, cancellous core) with discs between, and the arches."""
    grid = canvas.grid
    period = rng.uniform(30.0, 36.0)
    disc = ((grid.z - rng.uniform(0.0, period)) % period) < rng.uniform(6.0, 9.0)
    vertebra = _ellipse(grid, body.spine_x, body.spine_y, body.vertebra_width, body.vertebra_depth)
    core = _ellipse(
        grid, body.spine_x, body.spine_y, body.vertebra_width - 2.5, body.vertebra_depth - 2.5
    )
    cortex_hu = rng.uniform(650.0, 900.0)
    canvas.paint((vertebra < 1.0) & ~disc, cortex_hu)
    canvas.paint((core < 1.0) & ~disc, rng.uniform(150.0, 240.0))
    canvas.paint((vertebra < 1.0) & disc, rng.uniform(70.0, 100.0))

    canal = _ellipse(grid, body.spine_x, body.canal_y, 8.0, 8.0)
    arch = (canal < (13.0 / 8.0) ** 2) & (canal >= 1.0) & (grid.y < body.canal_y + 3.0)
    spinous = _ellipse(grid, body.spine_x, body.canal_y - 24.0, 4.0, 14.0) < 1.0
    transverse = np.zeros(grid.shape[:2] + (1,), dtype=bool)
    for side in (-1.0, 1.0):
        process = _ellipse(grid, body.spine_x + side * 24.0, body.canal_y + 2.0, 15.0, 4.5)
        transverse |= process < 1.0
    canvas.paint(arch | ((spinous | transverse) & ~disc), cortex_hu)
    canvas.paint(canal < 1.0, rng.uniform(5.0, 20.0))


@dataclass(frozen=True)
class Vessels:
    """The great vessels, against which the liver, kidneys and pancreas are placed."""

    aorta: tuple[float, float, float]  # x, y, radius
    ivc: tuple[float, float, float, float]  # x, y, half-width, half-depth
    hu: float  # enhanced blood

    def ivc_mask(self, grid: Grid) -> np.ndarray:
        x, y, half_x, half_y = self.ivc
        return _ellipse(grid, x, y, half_x, half_y) < 1.0


def _paint_great_vessels(canvas: Canvas, body: Body, rng: np.random.Generator) -> Vessels:
    """Aorta left of the midline in front of the spine, splitting into the iliac arteries low
    down, and the IVC to its right (not marked occupied: the liver wraps round it)."""
    grid = canvas.grid
    vessels = Vessels(
        aorta=(body.spine_x - rng.uniform(8.0, 13.0), body.prevertebral_y + rng.uniform(10.0, 14.0),
               rng.uniform(10.0, 12.5)),
        ivc=(body.spine_x + rng.uniform(22.0, 28.0), body.prevertebral_y + rng.uniform(10.0, 15.0),
             rng.uniform(12.0, 16.0), rng.uniform(8.0, 11.0)),
        hu=rng.uniform(160.0, 195.0),
    )
    ax, ay, radius = vessels.aorta
    bifurcation = rng.uniform(0.06, 0.16)
    aorta = _ellipse(grid, ax, ay, radius, radius) < 1.0
    canvas.paint(aorta & (grid.u >= bifurcation), vessels.hu)
    pelvis, pelvis_slices = grid.slab(0.0, bifurcation)
    spread = 10.0 + 250.0 * (bifurcation - pelvis.u)
    for side in (-1.0, 1.0):
        iliac = _ellipse(pelvis, body.spine_x + side * spread, ay - 3.0, 6.5, 6.5) < 1.0
        canvas.paint(iliac, vessels.hu, pelvis_slices)
    canvas.paint(vessels.ivc_mask(grid), vessels.hu - rng.uniform(20.0, 45.0), organ=False)
    return vessels


def _paint_kidneys(canvas: Canvas, body: Body, vessels: Vessels, rng: np.random.Generator) -> None:
    """Bean-shaped kidneys: bright cortex, sinus fat at the hilum, a renal vein to the IVC."""
    right_centre = rng.uniform(0.27, 0.38)
    cortex_hu = rng.uniform(150.0, 185.0)
    for side, centre in ((1.0, right_centre), (-1.0, right_centre + rng.uniform(0.03, 0.08))):
        half_height = rng.uniform(0.13, 0.18)
        grid, slices = canvas.grid.slab(centre - half_height, centre + half_height)
        cx = body.spine_x + side * rng.uniform(62.0, 74.0)
        cy = body.spine_y + rng.uniform(0.0, 10.0)
        hilum = np.array([-side, 0.8]) / math.hypot(1.0, 0.8)  # faces antero-medially
        half_across, half_hilum = rng.uniform(25.0, 30.0), rng.uniform(21.0, 26.0)
        along_hilum = (grid.x - cx) * hilum[0] + (grid.y - cy) * hilum[1]
        across = (grid.x - cx) * hilum[1] - (grid.y - cy) * hilum[0]
        height = ((grid.u - centre) / half_height) ** 2
        kidney = (across / half_across) ** 2 + (along_hilum / half_hilum) ** 2 + height
        sinus = (
            (across / (0.4 * half_across)) ** 2
            + ((along_hilum - 0.6 * half_hilum) / (0.5 * half_hilum)) ** 2
            + height / 0.36
        )
        canvas.paint(kidney < 1.0, cortex_hu, slices)
        canvas.paint(kidney < 0.55, cortex_hu - rng.uniform(15.0, 35.0), slices)
        canvas.paint((sinus < 1.0) & (kidney < 1.0), rng.uniform(-90.0, -60.0), slices)
        hilum_point = (cx + hilum[0] * 0.7 * half_hilum, cy + hilum[1] * 0.7 * half_hilum)
        target = vessels.ivc[:2] if side > 0 else vessels.aorta[:2]
        vein, _ = _segment_distance((grid.x, grid.y), hilum_point, target)
        at_hilum = np.abs(grid.u - centre) < 0.3 * half_height
        canvas.paint((vein < 4.0) & at_hilum & canvas.free(slices), vessels.hu - 20.0, slices)


def _paint_stomach(canvas: Canvas, body: Body, rng: np.random.Generator) -> None:
    """Stomach in the left upper abdomen: enhancing wall, fluid, and maybe gas at the front
    (the patient lies on the back) above a flat air-fluid level."""
    bottom, top = rng.uniform(0.5, 0.6), rng.uniform(0.84, 0.95)
    grid, slices = canvas.grid.slab(bottom, top)
    size = _bump(grid.u, bottom, top, 0.7)
    anterior, _ = body.depth()
    cx = body.skin.cx - 0.38 * body.width()
    cy = body.skin.cy + rng.uniform(0.05, 0.25) * anterior
    half_x, half_y = rng.uniform(32.0, 48.0) * size + 1e-3, rng.uniform(28.0, 40.0) * size + 1e-3
    stomach = (_ellipse(grid, cx, cy, half_x, half_y) < 1.0) & canvas.free(slices, 2.0)
    stomach &= body.cavity.inset(4.0, 4.0, 4.0).inside(grid, slices)
    lumen = stomach & (_ellipse(grid, cx, cy, half_x - 4.0, half_y - 4.0) < 1.0)
    canvas.paint(stomach, rng.uniform(60.0, 90.0), slices)
    canvas.paint(lumen, rng.uniform(5.0, 25.0), slices)
    canvas.paint(lumen & (grid.y > cy + rng.uniform(0.2, 1.2) * half_y), AIR_HU, slices)


def _paint_spleen(canvas: Canvas, body: Body, rng: np.random.Generator) -> None:
    """Spleen against the left posterolateral wall, behind the stomach."""
    bottom, top = rng.uniform(0.55, 0.65), rng.uniform(0.88, 0.99)
    grid, slices = canvas.grid.slab(bottom, top)
    size = _bump(grid.u, bottom, top)
    _, posterior = body.depth()
    level = _ellipse(
        grid, body.skin.cx - 0.62 * body.width(), body.skin.cy - 0.4 * posterior,
        rng.uniform(28.0, 38.0) * size + 1e-3, rng.uniform(40.0, 55.0) * size + 1e-3,
    )
    spleen = (level < 1.0) & body.cavity.inset(2.0, 2.0, 2.0).inside(grid, slices)
    canvas.paint(spleen & canvas.free(slices, 3.0), rng.uniform(45.0, 60.0), slices)


def _paint_pancreas(canvas: Canvas, body: Body, vessels: Vessels, rng: np.random.Generator) -> None:
    """Pancreas arching over the aorta from the duodenum to the splenic hilum, lobulated,
    with the splenic vein along its back."""
    bottom = rng.uniform(0.44, 0.5)
    top = bottom + rng.uniform(0.12, 0.18)
    grid, slices = canvas.grid.slab(bottom, top)
    front = body.prevertebral_y
    centre = (body.spine_x, front + rng.uniform(42.0, 52.0))
    path = (
        (body.spine_x + rng.uniform(28.0, 38.0), front + rng.uniform(30.0, 40.0), 13.0),  # head
        (centre[0], centre[1], 8.0),  # neck, in front of the superior mesenteric vessels
        (body.spine_x - rng.uniform(30.0, 40.0), front + rng.uniform(30.0, 42.0), 10.0),  # body
        (body.spine_x - 0.6 * body.width(), body.spine_y + rng.uniform(5.0, 20.0), 8.0),  # tail
    )
    size = _bump(grid.u, bottom, top, 0.5)
    inside = np.full(grid.shape, np.inf, dtype=np.float32)
    for (x0, y0, r0), (x1, y1, r1) in zip(path[:-1], path[1:]):
        distance, along = _segment_distance((grid.x, grid.y), (x0, y0), (x1, y1))
        inside = np.minimum(inside, distance - (r0 + (r1 - r0) * along) * size)
    inside -= 2.0 * smooth_noise(rng, grid, 10.0)
    free = canvas.free(slices, 2.0)
    canvas.paint((inside < 0) & free, rng.uniform(40.0, 55.0), slices)
    vein = np.full(grid.shape, np.inf, dtype=np.float32)
    for (x0, y0, _), (x1, y1, _) in zip(path[1:-1], path[2:]):
        vein = np.minimum(vein, _segment_distance((grid.x, grid.y + 12.0), (x0, y0), (x1, y1))[0])
    canvas.paint((vein < 3.0 * size) & free, vessels.hu - 25.0, slices)


def _paint_colon(canvas: Canvas, body: Body, liver_bottom: float, rng: np.random.Generator) -> None:
    """Ascending, transverse and descending colon: gas and mottled stool in a thin wall."""
    grid = canvas.grid
    anterior, posterior = body.depth()
    cx, cy, width = body.skin.cx, body.skin.cy, body.width()
    radius = rng.uniform(15.0, 22.0)
    transverse = rng.uniform(0.38, 0.46)
    placements = (  # centre x, centre y, lowest and highest u
        (cx + 0.68 * width, cy - 0.1 * posterior, 0.05, liver_bottom + 0.1),
        (cx - 0.7 * width, cy - 0.15 * posterior, 0.05, rng.uniform(0.65, 0.75)),
        (cx + rng.uniform(-0.2, 0.2) * width, cy + 0.55 * anterior, transverse, transverse + 0.08),
    )
    stool_hu = rng.uniform(-120.0, 20.0)
    wall_hu = rng.uniform(30.0, 50.0)
    for centre_x, centre_y, bottom, top in placements:
        sub, slices = grid.slab(bottom, top)
        level = _ellipse(sub, centre_x, centre_y, radius * 1.2, radius)
        free = body.cavity.inset(3.0, 3.0, 3.0).inside(sub, slices) & canvas.free(slices, 2.0)
        lumen = (level < ((radius - 3.0) / radius) ** 2) & free
        canvas.paint((level < 1.0) & free, wall_hu, slices)
        canvas.paint(lumen, stool_hu + 120.0 * smooth_noise(rng, sub, 8.0), slices)
        canvas.paint(lumen & (sub.y > centre_y + rng.uniform(-0.3, 0.5) * radius), AIR_HU, slices)


def _paint_gallbladder(canvas: Canvas, body: Body, liver_bottom: float, liver_top: float,
                       rng: np.random.Generator) -> None:
    """Fluid-filled gallbladder under the liver (not labelled liver, as in LiTS); some
    patients have had theirs removed."""
    if rng.uniform() < 0.2:
        return
    centre = liver_bottom + rng.uniform(0.15, 0.3) * (liver_top - liver_bottom)
    grid, slices = canvas.grid.slab(centre - 0.08, centre + 0.08)
    size = _bump(grid.u, centre - 0.08, centre + 0.08, 0.5)
    anterior, _ = body.depth()
    level = _ellipse(
        grid, body.skin.cx + 0.22 * body.width(), body.skin.cy + 0.3 * anterior,
        rng.uniform(12.0, 18.0) * size + 1e-3, rng.uniform(18.0, 28.0) * size + 1e-3,
    )
    gallbladder = (level < 1.0) & body.cavity.inside(grid, slices) & canvas.free(slices)
    canvas.paint(gallbladder, rng.uniform(0.0, 20.0), slices)


# ------------------------------------------------------------------------------------------
# Liver and lesions


@dataclass(frozen=True)
class Liver:
    mask: np.ndarray
    top: float  # u of the dome, where the lungs and the heart take over


def _liver_shape(
    grid: Grid, body: Body, bottom: float, top: float, rng: np.random.Generator
) -> np.ndarray:
    """Right lobe filling the right upper abdomen under the ribs, left lobe crossing the
    midline in front of the stomach in the upper half; round at the dome, a tip below."""
    width = body.width()
    anterior, posterior = body.depth()
    cx, cy = body.skin.cx, body.skin.cy
    widest = bottom + (top - bottom) * rng.uniform(0.55, 0.7)
    right_size = np.where(
        grid.u < widest,
        _bump(grid.u, bottom, 2 * widest - bottom, 1.1),
        _bump(grid.u, 2 * widest - top, top, 0.45),
    )
    left_bottom = bottom + (top - bottom) * rng.uniform(0.4, 0.6)
    left_size = _bump(grid.u, left_bottom, top, 0.6) * rng.uniform(0.7, 1.1)
    right = _ellipse(
        grid, cx + 0.45 * width, cy - 0.05 * posterior,
        rng.uniform(0.55, 0.65) * width * right_size + 1e-3,
        0.5 * (anterior + posterior) * right_size + 1e-3,
    )
    left = _ellipse(
        grid, cx, cy + 0.5 * anterior,
        0.42 * width * left_size + 1e-3, 0.3 * anterior * left_size + 1e-3,
    )
    wavy = 0.2 * smooth_noise(rng, grid, 70.0)
    return (np.minimum(right, left) + wavy < 1.0) & body.cavity.inside(grid)


def _paint_liver(canvas: Canvas, body: Body, bottom: float, top: float, vessels: Vessels,
                 rng: np.random.Generator) -> Liver:
    """Parenchyma of portal-venous HU with low-frequency texture and enhancing vessels,
    wrapped round the IVC."""
    grid = canvas.grid
    ivc = vessels.ivc_mask(grid)
    mask = _liver_shape(grid, body, bottom, top, rng) & canvas.free(slice(None), 3.0) & ~ivc
    mask = _largest_component(mask)
    liver_hu = rng.uniform(55.0, 68.0)
    box = _bounding_box(mask)
    inner = grid.crop(box)
    texture = 3.0 * smooth_noise(rng, inner, 30.0) + 1.5 * smooth_noise(rng, inner, 8.0)
    inside = mask[box]
    hu = canvas.hu[box]
    hu[inside] = liver_hu + texture[inside]
    vessel = _liver_vessels(inner, vessels, rng) & inside
    hu[vessel] = vessels.hu - rng.uniform(0.0, 25.0)
    canvas.occupied |= mask | ivc
    return Liver(mask=mask, top=top)


def _vessel_network(
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


def _liver_vessels(grid: Grid, vessels: Vessels, rng: np.random.Generator) -> np.ndarray:
    """Portal and hepatic veins over the liver's bounding box: a random branching network,
    the portal vein's main branches from the hilum, and the hepatic veins fanning out from
    the IVC below the dome, all tapering towards the periphery."""
    network = _vessel_network(rng, grid, 30.0, 0.35)
    ivc_x, ivc_y = vessels.ivc[:2]
    z_low, z_high = float(grid.z.min()), float(grid.z.max())
    hilum = (ivc_x - 5.0, ivc_y + 28.0, z_low + rng.uniform(0.3, 0.45) * (z_high - z_low))
    confluence = (ivc_x, ivc_y, z_high - rng.uniform(0.1, 0.2) * (z_high - z_low))
    tubes = (  # start, reach to the end (x, y, z), radius
        (hilum, (rng.uniform(45.0, 70.0), rng.uniform(10.0, 35.0), 15.0), 6.0),  # right portal
        (hilum, (-rng.uniform(35.0, 55.0), rng.uniform(50.0, 70.0), 25.0), 4.5),  # left portal
        (confluence, (rng.uniform(60.0, 90.0), rng.uniform(0.0, 30.0), -10.0), 4.5),  # right
        (confluence, (rng.uniform(0.0, 20.0), rng.uniform(60.0, 90.0), -10.0), 4.0),  # middle
        (confluence, (-rng.uniform(40.0, 60.0), rng.uniform(40.0, 60.0), -5.0), 3.5),  # left
    )
    for start, reach, radius in tubes:
        end = tuple(a + b for a, b in zip(start, reach))
        distance, along = _segment_distance((grid.x, grid.y, grid.z), start, end)
        network |= distance < radius * (1.0 - 0.6 * along)  # tapering towards the periphery
    return network


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """Keep the largest connected piece: fragments cut off by other organs are dropped."""
    labels, count = ndimage.label(mask)
    if count <= 1:
        return mask
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == sizes.argmax()


def _bounding_box(mask: np.ndarray) -> tuple[slice, ...]:
    return ndimage.find_objects(mask.astype(np.int8))[0]


def _paint_lesions(
    canvas: Canvas, liver: Liver, healthy: bool, rng: np.random.Generator
) -> np.ndarray:
    """Hypodense lesions (10-40 HU) of varied size, shape and number, clipped to the liver.

    Sizes are log-uniform from a few millimetres to several centimetres; some lesions are
    lobulated (a union of ellipsoids); the edge fades into the liver over a soft rim, some have
    a thin enhancing ring, and the big ones a darker necrotic centre. Returns the tumor mask.
    """
    tumor = np.zeros(canvas.grid.shape, dtype=bool)
    if healthy:
        return tumor
    grid = canvas.grid
    box = _bounding_box(liver.mask)
    mask = liver.mask[box]
    depth = ndimage.distance_transform_edt(mask, sampling=grid.spacing)
    inner = grid.crop(box)
    points = np.stack(np.broadcast_arrays(inner.x, inner.y, inner.z)).astype(np.float64)
    hu = canvas.hu[box]
    for number in range(min(1 + rng.poisson(2.5), 8)):
        # The first lesion is the one that brought the patient in; the others may be tiny.
        low = 12.0 if number == 0 else 3.0
        radius = float(np.exp(rng.uniform(np.log(low), np.log(30.0))))
        candidates = np.flatnonzero(depth >= min(0.5 * radius, 0.8 * depth.max()))
        centre = points.reshape(3, -1)[:, rng.choice(candidates)]
        inner = _lesion_depth(points, centre, radius, rng)
        lesion = (inner > 0) & mask
        fade = np.clip(inner[lesion] / rng.uniform(1.5, 4.0), 0.0, 1.0)
        fade = fade * fade * (3 - 2 * fade)  # smoothstep: the soft edge of a real lesion
        value = hu[lesion] + (rng.uniform(10.0, 40.0) - hu[lesion]) * fade
        if rng.uniform() < 0.4:
            value += rng.uniform(12.0, 25.0) * np.exp(-(((inner[lesion] - 1.5) / 1.5) ** 2))
        if radius > 20.0:
            value -= rng.uniform(5.0, 15.0) * (inner[lesion] > 0.5 * radius)
        hu[lesion] = value
        tumor[box] |= lesion
    return tumor


def _lesion_depth(
    points: np.ndarray, centre: np.ndarray, radius: float, rng: np.random.Generator
) -> np.ndarray:
    """Approximate depth (mm) inside a lesion: an ellipsoid or a lobulated union of a few."""
    lobes = 1 if rng.uniform() < 0.55 else int(rng.integers(2, 5))
    depth = np.full(points.shape[1:], -np.inf, dtype=np.float32)
    for lobe in range(lobes):
        offset = np.zeros(3) if lobe == 0 else rng.normal(size=3) * 0.45 * radius
        size = radius * (1.0 if lobe == 0 else rng.uniform(0.45, 0.8))
        axes = size * rng.uniform(0.75, 1.25, size=3)
        relative = points - (centre + offset)[:, None, None, None]
        local = np.tensordot(_random_rotation(rng).T, relative, axes=1)
        radial = np.sqrt(sum((local[i] / axes[i]) ** 2 for i in range(3)))
        depth = np.maximum(depth, (1.0 - radial) * axes.min())
    return depth


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    return q * np.sign(np.diag(r))


# ------------------------------------------------------------------------------------------
# What fills the rest


def _paint_bowel(canvas: Canvas, body: Body, rng: np.random.Generator) -> None:
    """Small-bowel loops in the free lower abdomen: fluid (or oral contrast) inside a wall,
    gas pockets towards the front."""
    grid, slices = canvas.grid.slab(0.0, rng.uniform(0.5, 0.62))
    region = body.cavity.inset(4.0, 4.0, 4.0).inside(grid, slices) & canvas.free(slices, 3.0)
    region &= grid.y - body.spine_y > 35.0 - 50.0 * ((grid.x - body.skin.cx) / body.width()) ** 2
    loops = smooth_noise(rng, grid, 35.0)
    threshold = rng.uniform(-0.5, 0.1)
    lumen = region & (loops > threshold + 0.35)
    content_hu = rng.uniform(5.0, 30.0) if rng.uniform() < 0.75 else rng.uniform(150.0, 250.0)
    canvas.paint(region & (loops > threshold), rng.uniform(35.0, 60.0), slices)
    canvas.paint(lumen, content_hu, slices)
    gas = smooth_noise(rng, grid, 15.0) + 0.01 * (grid.y - body.skin.cy)
    canvas.paint(lumen & (gas > rng.uniform(0.8, 1.4)), AIR_HU, slices)


def _paint_thorax(canvas: Canvas, body: Body, liver: Liver, rng: np.random.Generator) -> None:
    """Lung bases opening from the posterior recesses round the liver dome and the spleen,
    behind a thin diaphragm, and the heart resting on the dome."""
    start = liver.top - rng.uniform(0.15, 0.25)
    grid, slices = canvas.grid.slab(start, 1.0)
    anterior, posterior = body.depth()
    cx, cy, width = body.skin.cx, body.skin.cy, body.width()
    shrink = np.clip((liver.top + 0.02 - grid.u) / (liver.top + 0.02 - start), 0.0, 1.0)
    abdomen = _ellipse(
        grid, cx, cy + 0.3 * anterior,
        width * (0.2 + 0.95 * shrink) + 1e-3,
        (0.7 * anterior + posterior) * (0.2 + 0.9 * shrink) + 1e-3,
    ) < 1.0
    heart_size = np.clip((grid.u - liver.top + 0.1) / 0.12, 0.0, 1.0) + 1e-3
    heart = _ellipse(
        grid, cx - 0.2 * width, cy + 0.4 * anterior, 55.0 * heart_size, 45.0 * heart_size
    )
    free = canvas.free(slices)
    canvas.paint((heart < 1.0) & free, rng.uniform(40.0, 60.0), slices)
    canvas.paint((heart < 0.7) & free, rng.uniform(140.0, 180.0), slices)
    beside_spine = (np.abs(grid.x - body.spine_x) < 35.0) & (grid.y < body.prevertebral_y)
    lung = body.cavity.inside(grid, slices) & ~abdomen & ~beside_spine & canvas.free(slices)
    diaphragm = lung & ~canvas.free(slices, 4.0)
    texture = 15.0 * smooth_noise(rng, grid, 6.0)
    canvas.paint(lung, rng.uniform(-880.0, -830.0) + texture, slices)
    canvas.paint(lung & _vessel_network(rng, grid, 30.0, 0.08), rng.uniform(-300.0, -100.0), slices)
    canvas.paint(diaphragm, rng.uniform(35.0, 50.0), slices)


def _paint_ribs(canvas: Canvas, body: Body, rng: np.random.Generator) -> None:
    """Ribs as bright arcs lining the chest wall, and cartilage at their front ends.

    Ribs run obliquely down to the front, so each slice cuts them as short arcs that creep
    round the wall from one slice to the next; the lowest (floating) ribs end at the side.
    """
    lowest = rng.uniform(0.35, 0.45)
    grid, slices = canvas.grid.slab(lowest, 1.0)
    level = body.cavity.inset(-4.0, -4.0, -4.0).level(grid, slices)  # ribs line the wall
    from_back = _from_back(grid, body.skin.cx, body.skin.cy)
    position = from_back / rng.uniform(0.3, 0.4) - grid.z / rng.uniform(60.0, 90.0) + rng.uniform()
    lengths = rng.uniform(0.2, 0.45, size=16)  # each rib's arc, as a fraction of the spacing
    half = 0.5 * lengths[np.floor(position).astype(np.int64) % lengths.size]
    # An oval cross-section: along the arc, and across the wall.
    oval = ((position % 1.0 - half) / half) ** 2 + ((level - 1.0) / 0.06) ** 2
    reach = 1.3 + 1.8 * (grid.u - lowest) / (1.0 - lowest)
    ribs = (oval < 1.0) & (from_back > 0.55) & (from_back < reach)
    canvas.paint(ribs, rng.uniform(550.0, 800.0), slices, organ=False)
    canvas.paint(ribs & (oval < 0.3), rng.uniform(200.0, 300.0), slices, organ=False)
    canvas.paint(ribs & (from_back > 2.3), rng.uniform(120.0, 200.0), slices, organ=False)


def _paint_pelvis(canvas: Canvas, body: Body, rng: np.random.Generator) -> None:
    """Iliac wings low in the scan, flaring out posterolaterally."""
    top = rng.uniform(0.1, 0.18)
    grid, slices = canvas.grid.slab(0.0, top)
    level = body.cavity.level(grid, slices)
    from_back = _from_back(grid, body.skin.cx, body.skin.cy)
    flare = 1.2 + 2.0 * (top - grid.u)
    wing = (level > 0.5) & (level < 0.62) & (from_back > 0.6) & (from_back < flare)
    canvas.paint(wing & canvas.free(slices), rng.uniform(400.0, 650.0), slices)


# ------------------------------------------------------------------------------------------
# Acquisition and storage


def _acquire(canvas: Canvas, rng: np.random.Generator) -> np.ndarray:
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


@dataclass(frozen=True)
class Scan:
    """One synthetic patient in RAS+ array order."""

    hu: np.ndarray  # int16 (X, Y, Z)
    labels: np.ndarray  # uint8 (X, Y, Z)
    affine: np.ndarray  # RAS+ voxel-to-world


def synthesize_scan(cfg: PhantomConfig, index: int) -> Scan:
    """Draw patient ``index``, deterministically from ``cfg.seed + index``."""
    rng = np.random.default_rng(cfg.seed + index)
    grid = _sample_grid(rng, cfg)
    canvas = Canvas(
        grid, np.full(grid.shape, AIR_HU, dtype=np.float32), np.zeros(grid.shape, dtype=bool)
    )
    body = _sample_body(rng, grid)
    # The liver takes the upper half or so of the scan: kidneys, bowel and pelvis below it,
    # lung bases and the heart above its dome.
    liver_top = rng.uniform(0.86, 0.96)
    liver_bottom = liver_top - rng.uniform(0.5, 0.62)
    # Each organ goes where no earlier one is (most keep a fat margin); the liver comes after
    # its neighbours and fills the space they leave, as it does in the body.
    _paint_body_wall(canvas, body, rng)
    _paint_table(canvas, body, rng)
    _paint_back_muscles(canvas, body, rng)
    _paint_spine(canvas, body, rng)
    vessels = _paint_great_vessels(canvas, body, rng)
    _paint_kidneys(canvas, body, vessels, rng)
    _paint_stomach(canvas, body, rng)
    _paint_spleen(canvas, body, rng)
    _paint_pancreas(canvas, body, vessels, rng)
    _paint_colon(canvas, body, liver_bottom, rng)
    _paint_gallbladder(canvas, body, liver_bottom, liver_top, rng)
    liver = _paint_liver(canvas, body, liver_bottom, liver_top, vessels, rng)
    tumor = _paint_lesions(canvas, liver, index % HEALTHY_PATIENT_EVERY == 1, rng)
    _paint_bowel(canvas, body, rng)
    _paint_thorax(canvas, body, liver, rng)
    _paint_ribs(canvas, body, rng)
    _paint_pelvis(canvas, body, rng)
    labels = np.where(tumor, TUMOR_LABEL, np.where(liver.mask, LIVER_LABEL, BACKGROUND_LABEL))
    return Scan(hu=_acquire(canvas, rng), labels=labels.astype(np.uint8), affine=grid.affine())


def _save_pair(directory: Path, index: int, scan: Scan) -> None:
    """Write ``volume-N.nii.gz`` and ``segmentation-N.nii.gz`` in the orientation and storage
    type this patient is assigned (see ``STORED_AXCODES``)."""
    transform = ornt_transform(
        axcodes2ornt(("R", "A", "S")), axcodes2ornt(STORED_AXCODES[index % len(STORED_AXCODES)])
    )
    affine = scan.affine @ inv_ornt_aff(transform, scan.hu.shape)
    hu = apply_orientation(scan.hu, transform)
    if index % 2 == 1:  # unsigned with an intercept, as many DICOM converters store CT
        volume = nib.Nifti1Image((hu.astype(np.int32) + 1024).astype(np.uint16), affine)
        volume.header.set_slope_inter(1.0, -1024.0)
    else:
        volume = nib.Nifti1Image(hu, affine)
    segmentation = nib.Nifti1Image(apply_orientation(scan.labels, transform), affine)
    for image, kind in ((volume, "volume"), (segmentation, "segmentation")):
        image.header.set_xyzt_units("mm", "sec")
        image.set_qform(affine, code=1)
        image.set_sform(affine, code=1)
        nib.save(image, directory / f"{kind}-{index}.nii.gz")
