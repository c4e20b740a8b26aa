"""Schemas of the ``dataset`` config group (conf/dataset/*.yaml), registered in liver_gan/config.py.

Read by the data pipeline beside it (dataset.py, layouts.py, slicing.py, phantom/) and by every
tool that prepares or reopens a dataset.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import List, Optional

from omegaconf import MISSING


class DatasetName(str, Enum):
    phantom = "phantom"
    lits = "lits"
    msd = "msd"


class Layout(str, Enum):
    lits = "lits"  # volume-N / segmentation-N pairs, found recursively
    msd = "msd"  # Task03_Liver/imagesTr + labelsTr


class Subset(str, Enum):
    tumor = "tumor"
    healthy = "healthy"
    all = "all"


class Crop(str, Enum):
    none = "none"
    liver = "liver"


@dataclass
class HUWindow:
    """Hounsfield-unit window: values in [level - width/2, level + width/2] map to [-1, 1]."""

    level: float = 50.0
    width: float = 400.0


@dataclass
class PhantomConfig:
    """Size of the synthetic LiTS-format phantom written when ``dataset.name=phantom``."""

    num_volumes: int = 16
    in_plane: int = 192
    min_slices: int = 48
    max_slices: int = 72
    seed: int = 2024


@dataclass
class DatasetConfig:
    name: DatasetName = MISSING
    layout: Layout = Layout.lits
    root: str = MISSING
    resolution: int = 64
    subset: Subset = Subset.all  # every tool's default (tumor or healthy: one class); all keeps the class label
    window: HUWindow = field(default_factory=HUWindow)
    crop: Crop = Crop.none
    crop_margin: float = 0.15  # fraction of the liver bounding box added on each side
    # Smallest crop, as a fraction of the slice: the liver's first and last slices have tiny
    # bounding boxes, which would otherwise be blown up into blurry patches.
    crop_min_fraction: float = 0.35
    # Each slice also carries its liver and tumor masks as extra image channels (liver_gan/data/masks.py),
    # so that models generate image and label map together.
    masks: bool = False
    val_fraction: float = 0.1
    # Patient ids held out for validation and for testing; when set they override val_fraction
    # (liver_gan/data/dataset.py, split_patients). Test patients never reach training or validation.
    val_patients: Optional[List[int]] = None
    test_patients: Optional[List[int]] = None
    cache_dir: str = "outputs/cache"
    num_workers: int = 2
    skip_bad: bool = False
    phantom: PhantomConfig = field(default_factory=PhantomConfig)
