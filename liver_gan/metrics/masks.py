"""Mask checks of slices generated with their label maps (``dataset.masks=true``), each beside the
real training slices' own value:

- ``mask_tumor_share``: of the tumor-class samples, the share whose mask holds tumor;
- ``mask_clear_share``: of the healthy-class samples, the share whose mask holds none;
- ``mask_liver_area`` and ``mask_tumor_area``: the mean fraction of a slice that is liver (tumor
  included) or tumor;
- image-mask agreement: a U-Net (``eval.segmenter``) trained on the real training slices segments
  the generated images; ``mask_agreement_dice_{liver,tumor}`` is its Dice against the generated
  masks, ``..._real_val`` its Dice on the real validation slices.  Agreement near the real-val Dice
  means the masks fit their images as well as real annotations do; far below it, the generator
  draws masks that its images do not show.

A sample's class is its conditioning label, or for an unconditional model the class of
``dataset.subset`` (none for ``all``: the shares are then null).

On a CPU the U-Net is sized to the run's time budget: a run with ``trainer.max_minutes=M`` trains it
for ``eval.segmenter.epochs * M / CPU_FULL_SEGMENTER_MINUTES`` epochs (at least 1, at most
``eval.segmenter.epochs``), so that a 3-minute run is not followed by a much longer check.  The
epochs it trained are ``mask_segmenter_epochs``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from liver_gan.data.dataset import SliceSet
from liver_gan.data.labels import HEALTHY, LIVER_LABEL, TUMOR, TUMOR_LABEL
from liver_gan.data.masks import ct, label_maps
from liver_gan.downstream.segmentation import STRUCTURES, dice_by_structure, predict_label_maps, train_segmenter

MASK_KEYS = (
    "mask_tumor_share",
    "mask_tumor_share_real",
    "mask_clear_share",
    "mask_clear_share_real",
    "mask_liver_area",
    "mask_liver_area_real",
    "mask_tumor_area",
    "mask_tumor_area_real",
    *(f"mask_agreement_dice_{structure}" for structure in STRUCTURES),
    *(f"mask_agreement_dice_{structure}_real_val" for structure in STRUCTURES),
    "mask_segmenter_epochs",
)
# The trainer.max_minutes at and above which a CPU run's check trains all of eval.segmenter.epochs.
CPU_FULL_SEGMENTER_MINUTES = 30.0


@dataclass(frozen=True)
class MaskInputs:
    """What the mask checks read: the generated slices with their mask channels, and the real splits."""

    fake_images: Tensor  # (N, 1 + MASK_CHANNELS, R, R) in [-1, 1]
    fake_classes: Tensor | None  # (N,) HEALTHY / TUMOR, or None when unknown
    train: SliceSet  # with mask channels
    val: SliceSet


def class_shares(maps: Tensor, classes: Tensor | None) -> dict[str, float | None]:
    """Tumor-class maps holding tumor, and healthy-class maps holding none (None without such maps)."""
    has_tumor = (maps == TUMOR_LABEL).flatten(1).any(dim=1)

    def share(values: Tensor) -> float | None:
        return float(values.double().mean()) if len(values) else None

    if classes is None:
        return {"tumor": None, "clear": None}
    return {"tumor": share(has_tumor[classes == TUMOR]), "clear": share(~has_tumor[classes == HEALTHY])}


def mean_areas(maps: Tensor) -> dict[str, float | None]:
    """Mean fraction of the slice that is liver (tumor included) and that is tumor."""
    if len(maps) == 0:
        return {"liver": None, "tumor": None}
    return {
        "liver": float((maps >= LIVER_LABEL).double().mean()),
        "tumor": float((maps == TUMOR_LABEL).double().mean()),
    }


def segmenter_epochs(epochs: int, device: torch.device, budget_minutes: float | None) -> int:
    """The U-Net's epochs for this check: ``epochs``, or on a CPU with a time budget, its share of it."""
    if device.type != "cpu" or budget_minutes is None:
        return epochs
    return max(1, min(epochs, math.ceil(epochs * budget_minutes / CPU_FULL_SEGMENTER_MINUTES)))


def mask_report(
    inputs: MaskInputs, segmenter: DictConfig, device: torch.device, seed: int, budget_minutes: float | None = None
) -> dict[str, float | int | None]:
    """Every key of :data:`MASK_KEYS`; ``budget_minutes`` is the run's ``trainer.max_minutes``."""
    epochs = segmenter_epochs(segmenter.epochs, torch.device(device), budget_minutes)
    segmenter = OmegaConf.merge(segmenter, {"epochs": epochs})
    fake_maps, real_maps = label_maps(inputs.fake_images), label_maps(inputs.train.images)
    fake_shares = class_shares(fake_maps, inputs.fake_classes)
    real_shares = class_shares(real_maps, inputs.train.labels)
    fake_areas, real_areas = mean_areas(fake_maps), mean_areas(real_maps)
    model = train_segmenter(segmenter, ct(inputs.train.images), real_maps, device, seed)
    agreement = dice_by_structure(predict_label_maps(model, ct(inputs.fake_images), device), fake_maps)
    if len(inputs.val):
        real_val = dice_by_structure(
            predict_label_maps(model, ct(inputs.val.images), device), label_maps(inputs.val.images)
        )
    else:
        real_val = {structure: None for structure in STRUCTURES}
    return {
        "mask_tumor_share": fake_shares["tumor"],
        "mask_tumor_share_real": real_shares["tumor"],
        "mask_clear_share": fake_shares["clear"],
        "mask_clear_share_real": real_shares["clear"],
        "mask_liver_area": fake_areas["liver"],
        "mask_liver_area_real": real_areas["liver"],
        "mask_tumor_area": fake_areas["tumor"],
        "mask_tumor_area_real": real_areas["tumor"],
        **{f"mask_agreement_dice_{structure}": agreement[structure] for structure in STRUCTURES},
        **{f"mask_agreement_dice_{structure}_real_val": real_val[structure] for structure in STRUCTURES},
        "mask_segmenter_epochs": epochs,
    }
