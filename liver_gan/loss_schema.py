"""Schema of the ``loss`` config group (conf/loss/*.yaml), registered in liver_gan/config.py;
liver_gan/losses.py dispatches on its ``name``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from omegaconf import MISSING


class LossName(str, Enum):
    bce = "bce"
    nonsaturating = "nonsaturating"
    hinge = "hinge"
    wgan_gp = "wgan_gp"


@dataclass
class LossConfig:
    name: LossName = MISSING
    gradient_penalty: float = 0.0  # WGAN-GP lambda, or the R1 gamma of nonsaturating
    # R1 on every n-th D step only, scaled by n (StyleGAN2's lazy regularization uses 16); 1: every step.
    r1_interval: int = 1
