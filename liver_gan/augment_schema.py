"""Schemas of the ``augment`` config group (conf/augment/*.yaml), registered in liver_gan/config.py;
the augmentations themselves are in liver_gan/augment.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import List


class AugmentOp(str, Enum):
    translation = "translation"  # integer shifts, air (-1) shifted in
    cutout = "cutout"  # a square set to 0
    intensity = "intensity"  # brightness (window level) and contrast (window width)
    flip = "flip"  # left-right; off by default: it swaps the liver's side


@dataclass
class AugmentConfig:
    """``augment=none`` (no ops: D sees the images as they are); the options every augmentation shares.

    A saved ``none`` thus names its empty ``ops``, and a checkpoint's augmentation reloads as it was.
    """

    _target_: str = "liver_gan.augment.Augment"
    ops: List[AugmentOp] = field(default_factory=list)
    translation: float = 0.125  # largest shift, as a fraction of the image side
    cutout: float = 0.5  # side of the cut-out square, as a fraction of the image side
    brightness: float = 0.25  # largest shift of the [-1, 1] intensities (50 HU at width 400)
    contrast: float = 0.25  # largest relative change of the contrast around the image mean


@dataclass
class DiffAugmentConfig(AugmentConfig):
    """Zhao et al. (2020): the same differentiable ops on real and fake images before D."""

    ops: List[AugmentOp] = field(
        default_factory=lambda: [AugmentOp.translation, AugmentOp.cutout, AugmentOp.intensity]
    )


@dataclass
class ADAConfig(DiffAugmentConfig):
    """Karras et al. (2020a): each op applied with a probability p steered by D's overfitting."""

    _target_: str = "liver_gan.augment.AdaptiveAugment"
    target: float = 0.6  # the wanted E[sign(D(real))]
    ada_kimg: float = 500.0  # thousands of images over which p can move from 0 to 1
    adjust_every: int = 4  # D steps between adjustments of p
