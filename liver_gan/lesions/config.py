"""Schemas of the ``lesion`` config group (conf/lesion/*.yaml), registered in liver_gan/config.py.

Sizes are in millimetres of the volume's own voxel spacing and intensities in Hounsfield units,
tumor HU relative to the patient's healthy-liver median. The defaults are fitted to the manually
labelled metastases of LiTS patient 117 (../shared/data/real-ct/lits117; docs/tumors.md says how).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from omegaconf import MISSING


@dataclass
class ProceduralLesionConfig:
    """Hu et al. (CVPR 2023): lobulated, deformed ellipsoids with a noise texture at tumor HU."""

    # How many lesions each training patient gets: uniform in [count_min, count_max].
    count_min: int = 1
    count_max: int = 4
    # Diameter of the lesion's equivalent sphere: log-normal with this median and log-std, clipped.
    diameter_mm_median: float = 8.5
    diameter_mm_sigma: float = 0.55
    diameter_mm_min: float = 5.0
    diameter_mm_max: float = 47.0
    # Shape: each ellipsoid axis is the radius times a factor drawn in [1 - elongation, 1 + elongation];
    # a lesion is lobulated (a union of 2 to 4 ellipsoids) with probability lobulation.
    elongation: float = 0.25
    lobulation: float = 0.45
    # Elastic deformation: the lesion's coordinates are displaced by a smooth random field of this
    # amplitude (mm), smooth over elastic_scale_mm.
    elastic_mm: float = 1.5
    elastic_scale_mm: float = 8.0
    # Texture. contrast_hu is a lesion's mean HU inside its label minus the liver round it, whatever
    # its size: what lesion.fit_from measures, on lits117 -48.6 (the median over its 46 tumors; by
    # diameter -46 for 5-10 mm, -54 for 10-20, -50 for 20-47; benchmarks/insert.py --only lits117-size).
    # Tumor HU = the liver's own HU there (its scanner noise kept) + the contrast with a per-lesion
    # normal jitter of contrast_jitter_hu, deepened beyond the edge so that the mean stays the
    # contrast (liver_gan/lesions/procedural.py), + Gaussian noise of texture_hu standard deviation
    # smooth over texture_scale_mm (lits117's tumors' interior HU std is 20 against the liver's 17).
    contrast_hu: float = -48.6
    contrast_jitter_hu: float = 5.0
    texture_hu: float = 10.0
    texture_scale_mm: float = 2.0
    # Soft edge: a blur of this width centred on the lesion's outline, painted inside it only: half the
    # contrast at the outline, all of it edge_mm / 2 deep (a smoothstep). lits117's labels: the voxels
    # next to the outline inside hold about 0.7 of the contrast further in, those outside about 0.2
    # (a partial-volume halo the painter leaves out, since label 2 marks exactly the changed voxels).
    edge_mm: float = 4.0
    # Enhancing rim (with probability rim_probability): rim_hu brighter at rim_mm inside the edge.
    rim_probability: float = 0.0
    rim_hu: float = 20.0
    rim_mm: float = 1.5
    # Necrotic core (with probability necrosis_probability, lesions of necrosis_min_diameter_mm or more):
    # necrosis_hu darker than the tumor deeper than half the radius.
    necrosis_probability: float = 0.5
    necrosis_min_diameter_mm: float = 20.0
    necrosis_hu: float = 12.0
    # Mass effect: the surrounding liver is pushed outward by up to mass_effect_mm at the lesion's
    # edge, fading to nothing mass_effect_zone_mm further out; 0 turns it off.
    mass_effect_mm: float = 1.0
    mass_effect_zone_mm: float = 8.0
    # Placement: every lesion voxel is at least margin_mm inside the liver, tumor_margin_mm from
    # existing tumors and other inserted lesions, and vessel_margin_mm from vessels: liver voxels
    # brighter than the liver median + vessel_above_liver_hu.
    margin_mm: float = 3.0
    tumor_margin_mm: float = 5.0
    vessel_above_liver_hu: float = 50.0
    vessel_margin_mm: float = 1.0
    # A LiTS or MSD folder (the dataset.layout) whose labelled tumors set contrast_hu, the size
    # distribution and the count (liver_gan/lesions/fit.py); null: the values above.
    fit_from: Optional[str] = None


@dataclass
class LearnedLesionConfig(ProceduralLesionConfig):
    """The procedural shape and placement, filled by a trained inpainting model (liver_gan/lesions/learned.py)."""

    checkpoint: str = MISSING  # a run dir or .pt of a trained inpainting model
    device: str = "auto"  # auto | cpu | cuda | cuda:N
