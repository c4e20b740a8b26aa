"""One synthetic patient: the anatomy drawn organ by organ, then acquired as by a scanner."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from liver_gan.data.labels import BACKGROUND_LABEL, LIVER_LABEL, TUMOR_LABEL
from liver_gan.data.phantom.acquisition import acquire
from liver_gan.data.phantom.body import (
    AIR_HU,
    Canvas,
    paint_back_muscles,
    paint_body_wall,
    paint_pelvis,
    paint_ribs,
    paint_spine,
    paint_table,
    paint_thorax,
    sample_body,
)
from liver_gan.data.phantom.geometry import sample_grid
from liver_gan.data.phantom.liver import paint_lesions, paint_liver
from liver_gan.data.phantom.organs import (
    paint_bowel,
    paint_colon,
    paint_gallbladder,
    paint_great_vessels,
    paint_kidneys,
    paint_pancreas,
    paint_spleen,
    paint_stomach,
)
from liver_gan.data.schema import PhantomConfig

# Patients 1, 5, 9, ... have a healthy liver: LiTS has such patients, and so the phantom has
# them whatever the seed.
HEALTHY_PATIENT_EVERY = 4


@dataclass(frozen=True)
class Scan:
    """One synthetic patient in RAS+ array order."""

    hu: np.ndarray  # int16 (X, Y, Z)
    labels: np.ndarray  # uint8 (X, Y, Z)
    affine: np.ndarray  # RAS+ voxel-to-world


def synthesize_scan(cfg: PhantomConfig, index: int) -> Scan:
    """Draw patient ``index``, deterministically from ``cfg.seed + index``."""
    rng = np.random.default_rng(cfg.seed + index)
    grid = sample_grid(rng, cfg)
    canvas = Canvas(
        grid, np.full(grid.shape, AIR_HU, dtype=np.float32), np.zeros(grid.shape, dtype=bool)
    )
    body = sample_body(rng, grid)
    # The liver takes the upper half or so of the scan: kidneys, bowel and pelvis below it,
    # lung bases and the heart above its dome.
    liver_top = rng.uniform(0.86, 0.96)
    liver_bottom = liver_top - rng.uniform(0.5, 0.62)
    # Each organ goes where no earlier one is (most keep a fat margin); the liver comes after
    # its neighbours and fills the space they leave, as it does in the body.
    paint_body_wall(canvas, body, rng)
    paint_table(canvas, body, rng)
    paint_back_muscles(canvas, body, rng)
    paint_spine(canvas, body, rng)
    vessels = paint_great_vessels(canvas, body, rng)
    paint_kidneys(canvas, body, vessels, rng)
    paint_stomach(canvas, body, rng)
    paint_spleen(canvas, body, rng)
    paint_pancreas(canvas, body, vessels, rng)
    paint_colon(canvas, body, liver_bottom, rng)
    paint_gallbladder(canvas, body, liver_bottom, liver_top, rng)
    liver = paint_liver(canvas, body, liver_bottom, liver_top, vessels, rng)
    tumor = paint_lesions(canvas, liver, index % HEALTHY_PATIENT_EVERY == 1, rng)
    paint_bowel(canvas, body, rng)
    paint_thorax(canvas, body, liver.top, rng)
    paint_ribs(canvas, body, rng)
    paint_pelvis(canvas, body, rng)
    labels = np.where(tumor, TUMOR_LABEL, np.where(liver.mask, LIVER_LABEL, BACKGROUND_LABEL))
    return Scan(hu=acquire(canvas, rng), labels=labels.astype(np.uint8), affine=grid.affine())
