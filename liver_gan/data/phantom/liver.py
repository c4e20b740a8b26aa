"""The liver, with its vessels, and the lesions in it: the part of the phantom the labels mark.

Lesions are drawn by liver_gan/lesions/ (shape and shading), the painter that also inserts
tumors into real CT; this module keeps only the phantom's own count, size and HU draws."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from liver_gan.data.phantom.body import Body, Canvas
from liver_gan.data.phantom.geometry import Grid, bump, ellipse, segment_distance, smooth_noise, vessel_network
from liver_gan.data.phantom.organs import Vessels
from liver_gan.lesions.shading import shade_lesion
from liver_gan.lesions.shape import largest_component, lesion_depth


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
        bump(grid.u, bottom, 2 * widest - bottom, 1.1),
        bump(grid.u, 2 * widest - top, top, 0.45),
    )
    left_bottom = bottom + (top - bottom) * rng.uniform(0.4, 0.6)
    left_size = bump(grid.u, left_bottom, top, 0.6) * rng.uniform(0.7, 1.1)
    right = ellipse(
        grid, cx + 0.45 * width, cy - 0.05 * posterior,
        rng.uniform(0.55, 0.65) * width * right_size + 1e-3,
        0.5 * (anterior + posterior) * right_size + 1e-3,
    )
    left = ellipse(
        grid, cx, cy + 0.5 * anterior,
        0.42 * width * left_size + 1e-3, 0.3 * anterior * left_size + 1e-3,
    )
    wavy = 0.2 * smooth_noise(rng, grid, 70.0)
    return (np.minimum(right, left) + wavy < 1.0) & body.cavity.inside(grid)


def paint_liver(canvas: Canvas, body: Body, bottom: float, top: float, vessels: Vessels,
                 rng: np.random.Generator) -> Liver:
    """Parenchyma of portal-venous HU with low-frequency texture and enhancing vessels,
    wrapped round the IVC."""
    grid = canvas.grid
    ivc = vessels.ivc_mask(grid)
    mask = _liver_shape(grid, body, bottom, top, rng) & canvas.free(slice(None), 3.0) & ~ivc
    mask = largest_component(mask)
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


def _liver_vessels(grid: Grid, vessels: Vessels, rng: np.random.Generator) -> np.ndarray:
    """Portal and hepatic veins over the liver's bounding box: a random branching network,
    the portal vein's main branches from the hilum, and the hepatic veins fanning out from
    the IVC below the dome, all tapering towards the periphery."""
    network = vessel_network(rng, grid, 30.0, 0.35)
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
        distance, along = segment_distance((grid.x, grid.y, grid.z), start, end)
        network |= distance < radius * (1.0 - 0.6 * along)  # tapering towards the periphery
    return network


def _bounding_box(mask: np.ndarray) -> tuple[slice, ...]:
    return ndimage.find_objects(mask.astype(np.int8))[0]


def paint_lesions(
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
        inner = lesion_depth(points, centre, radius, rng)
        lesion = (inner > 0) & mask
        # Drawn in this order (edge, HU, rim, core) so that every seed keeps its phantom.
        edge_mm = rng.uniform(1.5, 4.0)
        target_hu = rng.uniform(10.0, 40.0)
        rim_hu = rng.uniform(12.0, 25.0) if rng.uniform() < 0.4 else None
        core_drop_hu = rng.uniform(5.0, 15.0) if radius > 20.0 else None
        hu[lesion] = shade_lesion(
            hu[lesion], inner[lesion], target_hu, edge_mm, rim_hu, core_drop_hu=core_drop_hu, core_depth_mm=0.5 * radius
        )
        tumor[box] |= lesion
    return tumor
