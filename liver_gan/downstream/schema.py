"""Schemas of the ``classifier`` and ``segmenter`` config groups (conf/classifier/*.yaml,
conf/segmenter/*.yaml), registered in liver_gan/config.py; the networks they configure are in
classification.py and segmentation.py beside them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List

from omegaconf import MISSING


@dataclass
class SegmenterConfig:
    """A 2D MONAI ``UNet`` for liver and tumor, and how it trains (liver_gan/downstream/segmentation.py).

    Used by the mask checks of the evaluation (``eval.segmenter``) and by ``liver-gan-utility
    task=segmentation`` (the ``segmenter`` group).  Every arm, seed and check trains it the same way.
    """

    channels: List[int] = field(default_factory=lambda: [16, 32, 64])  # per U-Net level
    strides: List[int] = field(default_factory=lambda: [2, 2])  # one fewer than channels
    num_res_units: int = 1
    epochs: int = 20
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-5
    horizontal_flip: bool = False  # off by default: it swaps the liver's side


@dataclass
class ClassifierConfig:
    """The healthy-vs-tumor classifier and how it is trained; the same for every arm and seed.

    ``model`` is instantiated with ``resolution=R`` and must map (N, 1, R, R) images in [-1, 1] to
    (N,) tumor logits, so a user's own network drops in with its own ``_target_`` and arguments.
    """

    model: Any = MISSING
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    horizontal_flip: bool = True
    vertical_flip: bool = False
