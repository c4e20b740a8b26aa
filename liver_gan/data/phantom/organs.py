"""The abdominal organs around the liver: great vessels, kidneys, stomach, spleen, pancreas,
colon, gallbladder and small bowel, each placed where no earlier one is."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from liver_gan.data.phantom.body import AIR_HU, Body, Canvas
from liver_gan.data.phantom.geometry import Grid, bump, ellipse, segment_distance, smooth_noise


@dataclass(frozen=True)
class Vessels:
    """The great vessels, against which the liver, kidneys and pancreas are placed."""

    aorta: tuple[float, float, float]  # x, y, radius
    ivc: tuple[float, float, float, float]  # x, y, half-width, half-depth
    hu: float  # enhanced blood

    def ivc_mask(self, grid: Grid) -> np.ndarray:
        x, y, half_x, half_y = self.ivc
        return ellipse(grid, x, y, half_x, half_y) < 1.0


def paint_great_vessels(canvas: Canvas, body: Body, rng: np.random.Generator) -> Vessels:
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
    aorta = ellipse(grid, ax, ay, radius, radius) < 1.0
    canvas.paint(aorta & (grid.u >= bifurcation), vessels.hu)
    pelvis, pelvis_slices = grid.slab(0.0, bifurcation)
    spread = 10.0 + 250.0 * (bifurcation - pelvis.u)
    for side in (-1.0, 1.0):
        iliac = ellipse(pelvis, body.spine_x + side * spread, ay - 3.0, 6.5, 6.5) < 1.0
        canvas.paint(iliac, vessels.hu, pelvis_slices)
    canvas.paint(vessels.ivc_mask(grid), vessels.hu - rng.uniform(20.0, 45.0), organ=False)
    return vessels


def paint_kidneys(canvas: Canvas, body: Body, vessels: Vessels, rng: np.random.Generator) -> None:
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
        vein, _ = segment_distance((grid.x, grid.y), hilum_point, target)
        at_hilum = np.abs(grid.u - centre) < 0.3 * half_height
        canvas.paint((vein < 4.0) & at_hilum & canvas.free(slices), vessels.hu - 20.0, slices)


def paint_stomach(canvas: Canvas, body: Body, rng: np.random.Generator) -> None:
    """Stomach in the left upper abdomen: enhancing wall, fluid, and maybe gas at the front
    (the patient lies on the back) above a flat air-fluid level."""
    bottom, top = rng.uniform(0.5, 0.6), rng.uniform(0.84, 0.95)
    grid, slices = canvas.grid.slab(bottom, top)
    size = bump(grid.u, bottom, top, 0.7)
    anterior, _ = body.depth()
    cx = body.skin.cx - 0.38 * body.width()
    cy = body.skin.cy + rng.uniform(0.05, 0.25) * anterior
    half_x, half_y = rng.uniform(32.0, 48.0) * size + 1e-3, rng.uniform(28.0, 40.0) * size + 1e-3
    stomach = (ellipse(grid, cx, cy, half_x, half_y) < 1.0) & canvas.free(slices, 2.0)
    stomach &= body.cavity.inset(4.0, 4.0, 4.0).inside(grid, slices)
    lumen = stomach & (ellipse(grid, cx, cy, half_x - 4.0, half_y - 4.0) < 1.0)
    canvas.paint(stomach, rng.uniform(60.0, 90.0), slices)
    canvas.paint(lumen, rng.uniform(5.0, 25.0), slices)
    canvas.paint(lumen & (grid.y > cy + rng.uniform(0.2, 1.2) * half_y), AIR_HU, slices)


def paint_spleen(canvas: Canvas, body: Body, rng: np.random.Generator) -> None:
    """Spleen against the left posterolateral wall, behind the stomach."""
    bottom, top = rng.uniform(0.55, 0.65), rng.uniform(0.88, 0.99)
    grid, slices = canvas.grid.slab(bottom, top)
    size = bump(grid.u, bottom, top)
    _, posterior = body.depth()
    level = ellipse(
        grid, body.skin.cx - 0.62 * body.width(), body.skin.cy - 0.4 * posterior,
        rng.uniform(28.0, 38.0) * size + 1e-3, rng.uniform(40.0, 55.0) * size + 1e-3,
    )
    spleen = (level < 1.0) & body.cavity.inset(2.0, 2.0, 2.0).inside(grid, slices)
    canvas.paint(spleen & canvas.free(slices, 3.0), rng.uniform(45.0, 60.0), slices)


def paint_pancreas(canvas: Canvas, body: Body, vessels: Vessels, rng: np.random.Generator) -> None:
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
    size = bump(grid.u, bottom, top, 0.5)
    inside = np.full(grid.shape, np.inf, dtype=np.float32)
    for (x0, y0, r0), (x1, y1, r1) in zip(path[:-1], path[1:]):
        distance, along = segment_distance((grid.x, grid.y), (x0, y0), (x1, y1))
        inside = np.minimum(inside, distance - (r0 + (r1 - r0) * along) * size)
    inside -= 2.0 * smooth_noise(rng, grid, 10.0)
    free = canvas.free(slices, 2.0)
    canvas.paint((inside < 0) & free, rng.uniform(40.0, 55.0), slices)
    vein = np.full(grid.shape, np.inf, dtype=np.float32)
    for (x0, y0, _), (x1, y1, _) in zip(path[1:-1], path[2:]):
        vein = np.minimum(vein, segment_distance((grid.x, grid.y + 12.0), (x0, y0), (x1, y1))[0])
    canvas.paint((vein < 3.0 * size) & free, vessels.hu - 25.0, slices)


def paint_colon(canvas: Canvas, body: Body, liver_bottom: float, rng: np.random.Generator) -> None:
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
        level = ellipse(sub, centre_x, centre_y, radius * 1.2, radius)
        free = body.cavity.inset(3.0, 3.0, 3.0).inside(sub, slices) & canvas.free(slices, 2.0)
        lumen = (level < ((radius - 3.0) / radius) ** 2) & free
        canvas.paint((level < 1.0) & free, wall_hu, slices)
        canvas.paint(lumen, stool_hu + 120.0 * smooth_noise(rng, sub, 8.0), slices)
        canvas.paint(lumen & (sub.y > centre_y + rng.uniform(-0.3, 0.5) * radius), AIR_HU, slices)


def paint_gallbladder(canvas: Canvas, body: Body, liver_bottom: float, liver_top: float,
                       rng: np.random.Generator) -> None:
    """Fluid-filled gallbladder under the liver (not labelled liver, as in LiTS); some
    patients have had theirs removed."""
    if rng.uniform() < 0.2:
        return
    centre = liver_bottom + rng.uniform(0.15, 0.3) * (liver_top - liver_bottom)
    grid, slices = canvas.grid.slab(centre - 0.08, centre + 0.08)
    size = bump(grid.u, centre - 0.08, centre + 0.08, 0.5)
    anterior, _ = body.depth()
    level = ellipse(
        grid, body.skin.cx + 0.22 * body.width(), body.skin.cy + 0.3 * anterior,
        rng.uniform(12.0, 18.0) * size + 1e-3, rng.uniform(18.0, 28.0) * size + 1e-3,
    )
    gallbladder = (level < 1.0) & body.cavity.inside(grid, slices) & canvas.free(slices)
    canvas.paint(gallbladder, rng.uniform(0.0, 20.0), slices)


def paint_bowel(canvas: Canvas, body: Body, rng: np.random.Generator) -> None:
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
