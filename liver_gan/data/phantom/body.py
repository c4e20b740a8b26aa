"""The trunk: the canvas the organs are painted on, the body's layers (skin, fat, muscle wall),
the table, spine, back muscles, ribs and pelvis, and the thorax above the liver's dome."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from liver_gan.data.phantom.geometry import Grid, Outline, angle_from_back, ellipse, grow, smooth_noise, vessel_network

AIR_HU = -1000.0


@dataclass
class Canvas:
    """The volume being drawn, in HU, with what is already taken by an organ."""

    grid: Grid
    hu: np.ndarray
    occupied: np.ndarray

    def paint(
        self, mask: np.ndarray, value: float | np.ndarray, slices: slice = slice(None), organ: bool = True
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
        return ~(grow(taken, self.grid, margin_mm) if margin_mm else taken)


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


def sample_body(rng: np.random.Generator, grid: Grid) -> Body:
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


def paint_body_wall(canvas: Canvas, body: Body, rng: np.random.Generator) -> None:
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


def paint_table(canvas: Canvas, body: Body, rng: np.random.Generator) -> None:
    """The scanner table under the patient's back: two thin shells around a foam core."""
    grid = canvas.grid
    top = body.skin.cy - body.skin.posterior[0, 0, 0] - rng.uniform(0.5, 3.0)
    depth = top + (grid.x - body.skin.cx) ** 2 / 1500.0 - grid.y  # below the curved top
    board = (depth > 0) & (depth < 30.0) & ~body.skin.inside(grid)
    canvas.paint(board, -900.0, organ=False)
    shell = max(2.0, grid.spacing[0])
    canvas.paint(board & ((depth < shell) | (depth > 30.0 - shell)), 150.0, organ=False)


def paint_back_muscles(canvas: Canvas, body: Body, rng: np.random.Generator) -> None:
    """Erector spinae filling the gutters beside the spinous processes; psoas beside the
    lumbar vertebrae, growing towards the pelvis."""
    grid = canvas.grid
    muscle_hu = rng.uniform(42.0, 55.0)
    size = rng.uniform(0.9, 1.15)
    inside = body.fat_inner.inside(grid)
    lower, lower_slices = grid.slab(0.0, 0.6)
    for side in (-1.0, 1.0):
        erector = ellipse(
            grid, body.spine_x + side * 26.0 * size, body.canal_y - 12.0, 21.0 * size, 18.0
        )
        canvas.paint((erector < 1.0) & inside, muscle_hu)
        radius = np.maximum(22.0 * size * (0.6 - lower.u) / 0.6, 1e-3)
        psoas = ellipse(
            lower, body.spine_x + side * (body.vertebra_width[:, :, lower_slices] + 0.6 * radius),
            body.spine_y + 3.0, radius, 0.8 * radius,
        )
        canvas.paint(psoas < 1.0, muscle_hu, lower_slices)


def paint_spine(canvas: Canvas, body: Body, rng: np.random.Generator) -> None:
    """Vertebral bodies (bright cortex, cancellous core) with discs between, and the arches."""
    grid = canvas.grid
    period = rng.uniform(30.0, 36.0)
    disc = ((grid.z - rng.uniform(0.0, period)) % period) < rng.uniform(6.0, 9.0)
    vertebra = ellipse(grid, body.spine_x, body.spine_y, body.vertebra_width, body.vertebra_depth)
    core = ellipse(
        grid, body.spine_x, body.spine_y, body.vertebra_width - 2.5, body.vertebra_depth - 2.5
    )
    cortex_hu = rng.uniform(650.0, 900.0)
    canvas.paint((vertebra < 1.0) & ~disc, cortex_hu)
    canvas.paint((core < 1.0) & ~disc, rng.uniform(150.0, 240.0))
    canvas.paint((vertebra < 1.0) & disc, rng.uniform(70.0, 100.0))

    canal = ellipse(grid, body.spine_x, body.canal_y, 8.0, 8.0)
    arch = (canal < (13.0 / 8.0) ** 2) & (canal >= 1.0) & (grid.y < body.canal_y + 3.0)
    spinous = ellipse(grid, body.spine_x, body.canal_y - 24.0, 4.0, 14.0) < 1.0
    transverse = np.zeros(grid.shape[:2] + (1,), dtype=bool)
    for side in (-1.0, 1.0):
        process = ellipse(grid, body.spine_x + side * 24.0, body.canal_y + 2.0, 15.0, 4.5)
        transverse |= process < 1.0
    canvas.paint(arch | ((spinous | transverse) & ~disc), cortex_hu)
    canvas.paint(canal < 1.0, rng.uniform(5.0, 20.0))


def paint_thorax(canvas: Canvas, body: Body, liver_top: float, rng: np.random.Generator) -> None:
    """Lung bases opening from the posterior recesses round the liver dome and the spleen,
    behind a thin diaphragm, and the heart resting on the dome."""
    start = liver_top - rng.uniform(0.15, 0.25)
    grid, slices = canvas.grid.slab(start, 1.0)
    anterior, posterior = body.depth()
    cx, cy, width = body.skin.cx, body.skin.cy, body.width()
    shrink = np.clip((liver_top + 0.02 - grid.u) / (liver_top + 0.02 - start), 0.0, 1.0)
    abdomen = ellipse(
        grid, cx, cy + 0.3 * anterior,
        width * (0.2 + 0.95 * shrink) + 1e-3,
        (0.7 * anterior + posterior) * (0.2 + 0.9 * shrink) + 1e-3,
    ) < 1.0
    heart_size = np.clip((grid.u - liver_top + 0.1) / 0.12, 0.0, 1.0) + 1e-3
    heart = ellipse(
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
    canvas.paint(lung & vessel_network(rng, grid, 30.0, 0.08), rng.uniform(-300.0, -100.0), slices)
    canvas.paint(diaphragm, rng.uniform(35.0, 50.0), slices)


def paint_ribs(canvas: Canvas, body: Body, rng: np.random.Generator) -> None:
    """Ribs as bright arcs lining the chest wall, and cartilage at their front ends.

    Ribs run obliquely down to the front, so each slice cuts them as short arcs that creep
    round the wall from one slice to the next; the lowest (floating) ribs end at the side.
    """
    lowest = rng.uniform(0.35, 0.45)
    grid, slices = canvas.grid.slab(lowest, 1.0)
    level = body.cavity.inset(-4.0, -4.0, -4.0).level(grid, slices)  # ribs line the wall
    from_back = angle_from_back(grid, body.skin.cx, body.skin.cy)
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


def paint_pelvis(canvas: Canvas, body: Body, rng: np.random.Generator) -> None:
    """Iliac wings low in the scan, flaring out posterolaterally."""
    top = rng.uniform(0.1, 0.18)
    grid, slices = canvas.grid.slab(0.0, top)
    level = body.cavity.level(grid, slices)
    from_back = angle_from_back(grid, body.skin.cx, body.skin.cy)
    flare = 1.2 + 2.0 * (top - grid.u)
    wing = (level > 0.5) & (level < 0.62) & (from_back > 0.6) & (from_back < flare)
    canvas.paint(wing & canvas.free(slices), rng.uniform(400.0, 650.0), slices)
