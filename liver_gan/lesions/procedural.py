"""Paint lesions into one patient's volume (canonical RAS+ arrays, HU in float32): Hu et al.'s
recipe of placement, shape, mass effect and texture, in 3-D so that neighbouring slices agree.

With a ``fill`` (``lesion=learned``) the procedural shapes are placed the same way and the model
fills them instead of the procedural texture.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from liver_gan.errors import LiverGanError
from liver_gan.lesions.config import ProceduralLesionConfig
from liver_gan.lesions.mass_effect import push_liver
from liver_gan.lesions.placement import LiverRegion, clearance, exclude_lesion, liver_region
from liver_gan.lesions.shading import shade_lesion
from liver_gan.lesions.shape import elastic_points, largest_component, lesion_depth, smooth_field

Spacing = tuple[float, float, float]
# A real tumor's blurred edge is centred on its outline, where annotators draw the mask: half the
# contrast is there already. The outer half of the blur is not painted, as label 2 marks exactly
# the voxels that changed.
EDGE_AT_SURFACE = 0.5


class Fill(Protocol):
    """The learned inpainter's contract (liver_gan/lesions/learned.py, ``Inpainter.fill``)."""

    def fill(
        self, hu: np.ndarray, region: np.ndarray, liver: np.ndarray, spacing: Spacing, rng: np.random.Generator
    ) -> np.ndarray: ...


@dataclass(frozen=True)
class Lesion:
    """One painted lesion: its placed centre (canonical voxel index) and its voxels."""

    centre: tuple[int, int, int]
    box: tuple[slice, slice, slice]  # of the whole volume
    mask: np.ndarray  # bool over box
    diameter_mm: float  # of the sphere of its volume
    volume_ml: float


@dataclass(frozen=True)
class Painting:
    hu: np.ndarray  # float32, the new volume
    tumor: np.ndarray  # bool, every painted lesion
    changed: np.ndarray  # bool, the lesions and their mass-effect zones: the only voxels that differ
    lesions: list[Lesion]
    liver_hu: float  # median of the healthy liver before painting


def paint_patient(
    hu: np.ndarray,
    labels: np.ndarray,
    spacing: Spacing,
    cfg: ProceduralLesionConfig,
    rng: np.random.Generator,
    source: str,
    fill: Fill | None = None,
) -> Painting:
    """Paint ``count_min``..``count_max`` lesions into the healthy liver of ``hu``; ``source`` names
    the file in errors."""
    region = liver_region(hu, labels, spacing, cfg)
    if region is None:
        raise LiverGanError(
            f"{source}: no healthy liver (label 1) to insert lesions into; "
            "use segmentations with a liver label, or hold this patient out with dataset.val_patients"
        )
    painted = hu.astype(np.float32, copy=True)
    tumor = np.zeros(hu.shape, dtype=bool)
    changed = np.zeros(hu.shape, dtype=bool)
    lesions = []
    for _ in range(int(rng.integers(cfg.count_min, cfg.count_max + 1))):
        lesion = _paint_one(painted, tumor, changed, region, spacing, cfg, rng, source, shade=fill is None)
        if lesion is not None:
            lesions.append(lesion)
    if fill is not None and tumor.any():
        liver = np.zeros(hu.shape, dtype=bool)
        liver[region.box] = region.liver
        painted = fill.fill(painted, tumor, liver, spacing, rng).astype(np.float32)
    return Painting(painted, tumor, changed, lesions, region.liver_hu)


def _paint_one(
    hu: np.ndarray,
    tumor: np.ndarray,
    changed: np.ndarray,
    region: LiverRegion,
    spacing: Spacing,
    cfg: ProceduralLesionConfig,
    rng: np.random.Generator,
    source: str,
    shade: bool,
) -> Lesion | None:
    """Place, shape, push and shade one lesion into ``hu`` (in place); None when nothing fits any more."""
    room = clearance(region.allowed, spacing)
    if room.max() <= 0:
        return None
    diameter = float(np.clip(rng.lognormal(math.log(cfg.diameter_mm_median), cfg.diameter_mm_sigma),
                             cfg.diameter_mm_min, cfg.diameter_mm_max))
    radius = min(diameter / 2, float(room.max()))
    if 2 * radius < cfg.diameter_mm_min:
        if not tumor.any():
            raise LiverGanError(
                f"{source}: a lesion of lesion.diameter_mm_min={cfg.diameter_mm_min:g} mm does not fit in this "
                f"liver: its largest free ball is {2 * float(room.max()):.1f} mm across at lesion.margin_mm="
                f"{cfg.margin_mm:g} from its edge, vessels and tumors; lower lesion.diameter_mm_min or lesion.margin_mm"
            )
        return None
    offset = np.array([s.start for s in region.box])
    centre = offset + np.unravel_index(rng.choice(np.flatnonzero(room >= radius)), room.shape)
    box = _crop_around(centre, radius, hu.shape, spacing, cfg)
    inner = tuple(slice(b.start - o, b.stop - o) for b, o in zip(box, offset))
    points = np.stack(np.meshgrid(*[np.arange(b.start, b.stop) * step for b, step in zip(box, spacing)],
                                  indexing="ij")).astype(np.float32)
    centre_mm = centre * np.asarray(spacing)
    depth = lesion_depth(elastic_points(points, spacing, cfg.elastic_mm, cfg.elastic_scale_mm, rng),
                         centre_mm, radius, rng, cfg.lobulation, cfg.elongation)
    allowed = _fully_inside(region.allowed, inner)
    mask = largest_component((depth > 0) & allowed)
    if not mask.any():
        return None
    crop = hu[box]
    movable = _fully_inside(region.liver, inner) & ~tumor[box]
    zone = push_liver(crop, movable, mask, points, centre_mm, spacing, cfg.mass_effect_mm, cfg.mass_effect_zone_mm)
    if shade:
        crop[mask] = _shade(crop[mask], depth[mask], 2 * radius, spacing, box, mask, cfg, rng)
    tumor[box] |= mask
    changed[box] |= mask | zone
    exclude_lesion(region, tumor[region.box], cfg, spacing)
    volume_mm3 = np.count_nonzero(mask) * float(np.prod(spacing))
    return Lesion(tuple(int(c) for c in centre), box, mask, (6 * volume_mm3 / np.pi) ** (1 / 3), volume_mm3 / 1000)


def _shade(
    hu: np.ndarray, depth: np.ndarray, diameter: float, spacing: Spacing, box: tuple[slice, ...],
    mask: np.ndarray, cfg: ProceduralLesionConfig, rng: np.random.Generator,
) -> np.ndarray:
    """The tumor's HU: the tissue there shifted by the contrast (with its jitter) and the noise
    texture, through the soft edge, with a rim and a necrotic core when drawn.

    The contrast is the lesion's mean HU shift inside its label, as ``lesion.fit_from`` measures it
    on real tumors: the shift beyond the edge is deepened by what the edge, rim and core take from
    the mean. A small lesion is mostly edge, so its core comes out darker than a large one's, as in
    lits117's labels (5-10 mm tumors: -46 HU on average, -60 beyond 1.5 mm deep)."""
    shape = tuple(b.stop - b.start for b in box)
    texture = cfg.texture_hu * smooth_field(rng, shape, spacing, cfg.texture_scale_mm)[mask]
    contrast = cfg.contrast_hu + cfg.contrast_jitter_hu * rng.standard_normal()
    rim_hu = cfg.rim_hu if rng.uniform() < cfg.rim_probability else None
    necrotic = diameter >= cfg.necrosis_min_diameter_mm and rng.uniform() < cfg.necrosis_probability
    core_hu = cfg.necrosis_hu if necrotic else None
    # Shaded onto 0 HU: towards 1 HU it is the edge's fade alone, towards 0 HU the rim and core alone.
    tissue = np.zeros_like(hu)
    fade = shade_lesion(tissue, depth, 1.0, cfg.edge_mm, edge_start=EDGE_AT_SURFACE)
    rim_and_core = shade_lesion(tissue, depth, 0.0, cfg.edge_mm, rim_hu, cfg.rim_mm, core_hu, diameter / 4, EDGE_AT_SURFACE)
    deep = (contrast - float(rim_and_core.mean())) / float(fade.mean())
    return shade_lesion(
        hu, depth, hu + deep + texture, cfg.edge_mm, rim_hu, cfg.rim_mm, core_hu, diameter / 4, EDGE_AT_SURFACE,
    )


def _crop_around(
    centre: np.ndarray, radius: float, shape: tuple[int, ...], spacing: Spacing, cfg: ProceduralLesionConfig
) -> tuple[slice, slice, slice]:
    """A box round the centre holding the largest lesion the shape can draw and its mass-effect zone."""
    reach = radius * (1 + cfg.elongation) * 1.5 + 3 * cfg.elastic_mm + cfg.mass_effect_zone_mm + cfg.mass_effect_mm
    half = [int(math.ceil(reach / step)) + 1 for step in spacing]
    return tuple(slice(max(int(c) - h, 0), min(int(c) + h + 1, n)) for c, h, n in zip(centre, half, shape))


def _fully_inside(mask: np.ndarray, inner: tuple[slice, ...]) -> np.ndarray:
    """``mask`` (over the liver's box) at ``inner``, False where the crop runs past the box."""
    out = np.zeros(tuple(s.stop - s.start for s in inner), dtype=bool)
    clipped = tuple(slice(max(s.start, 0), min(s.stop, n)) for s, n in zip(inner, mask.shape))
    target = tuple(slice(c.start - s.start, c.stop - s.start) for c, s in zip(clipped, inner))
    out[target] = mask[clipped]
    return out
