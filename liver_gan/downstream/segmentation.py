"""Liver and tumor segmentation of 2D slices: MONAI's ``UNet``, its training (the same recipe for
every arm, seed and check) and its Dice on label maps (MONAI's ``DiceMetric``).

Dice is scored on the nested masks the datasets use (liver_gan/data/masks.py): *liver* is the
whole liver, tumor included (labels >= 1), as in the LiTS challenge's liver score, and *tumor* is
label 2.  A slice or patient whose reference has none of a structure gives no Dice for it
(MONAI's ``ignore_empty``), so healthy slices do not count as perfect tumor scores; a prediction
that misses a structure the reference has scores 0.

The network trains by the recipe every downstream network shares (liver_gan/downstream/supervised.py).
"""

from __future__ import annotations

import math

import torch
from monai.losses import DiceCELoss
from monai.metrics import DiceMetric
from monai.networks.nets import UNet
from omegaconf import DictConfig
from torch import Tensor, nn

from liver_gan.data.labels import LIVER_LABEL, TUMOR_LABEL
from liver_gan.downstream.supervised import train_supervised
from liver_gan.errors import LiverGanError

STRUCTURES = ("liver", "tumor")  # Dice keys, in the order of STRUCTURE_LABELS
SEGMENTATION_METRICS = tuple(f"dice_{structure}" for structure in STRUCTURES)  # liver-gan-utility's names
STRUCTURE_LABELS = (LIVER_LABEL, TUMOR_LABEL)  # the smallest label each structure covers
NUM_LABELS = 3  # background, liver, tumor


def build_segmenter(cfg: DictConfig, resolution: int) -> nn.Module:
    """``segmenter.*``'s 2D U-Net: one CT channel in, background/liver/tumor logits out."""
    strides = list(cfg.strides)
    if len(strides) != len(cfg.channels) - 1:
        raise LiverGanError(
            f"segmenter.strides={strides} needs one entry fewer than segmenter.channels={list(cfg.channels)}"
        )
    if resolution % math.prod(strides):
        raise LiverGanError(
            f"segmenter.strides={strides} halve {resolution} px to a fraction; use fewer levels or stride 1"
        )
    return UNet(
        spatial_dims=2,
        in_channels=1,
        out_channels=NUM_LABELS,
        channels=tuple(cfg.channels),
        strides=tuple(strides),
        num_res_units=cfg.num_res_units,
    )


def train_segmenter(
    cfg: DictConfig, images: Tensor, label_maps: Tensor, device: torch.device, seed: int
) -> nn.Module:
    """Train ``cfg``'s U-Net on CT slices (N, 1, R, R) and their label maps (N, R, R) with Adam and
    MONAI's Dice + cross-entropy loss; ``seed`` fixes the initialisation, batch order and flips."""
    if len(images) == 0:
        raise LiverGanError("the segmenter has no training slices; check dataset.masks=true and the data")
    torch.manual_seed(seed)
    model = build_segmenter(cfg, images.shape[-1]).to(device)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    rng = torch.Generator().manual_seed(seed)

    def flipped(x: Tensor, y: Tensor, rng: torch.Generator) -> tuple[Tensor, Tensor]:
        """A slice and its label map flip together, left-right with probability 1/2."""
        if not cfg.horizontal_flip:
            return x, y
        flip = (torch.rand(len(x), generator=rng) < 0.5).to(x.device).view(-1, 1, 1, 1)
        return torch.where(flip, x.flip(3), x), torch.where(flip, y.flip(3), y)

    return train_supervised(model, loss_fn, images.to(device), label_maps.unsqueeze(1).to(device), cfg, rng, flipped)


@torch.no_grad()
def predict_label_maps(model: nn.Module, images: Tensor, device: torch.device, batch_size: int = 64) -> Tensor:
    """int64 (N, R, R) label maps of CT slices (N, 1, R, R), on the CPU."""
    model.eval()
    maps = [model(batch.to(device)).argmax(dim=1).cpu() for batch in images.split(batch_size)]
    return torch.cat(maps) if maps else torch.empty(0, *images.shape[2:], dtype=torch.int64)


def structure_masks(label_maps: Tensor) -> Tensor:
    """(N, R, R) labels -> float (N, 2, R, R): the whole liver and the tumor, as MONAI's metrics take them."""
    return torch.stack([label_maps >= label for label in STRUCTURE_LABELS], dim=1).float()


def dice_per_item(predicted: Tensor, reference: Tensor) -> Tensor:
    """(N, 2) Dice of liver and tumor for each pair of (N, R, R) label maps; NaN where the
    reference has none of that structure."""
    metric = DiceMetric(include_background=True, reduction="none", ignore_empty=True)
    return metric(structure_masks(predicted), structure_masks(reference)).float()


def dice_by_structure(predicted: Tensor, reference: Tensor) -> dict[str, float | None]:
    """Mean Dice per structure over the slices whose reference has it (None where none has)."""
    return nan_means(dice_per_item(predicted, reference))


def dice_per_patient(predicted: Tensor, reference: Tensor, patient_ids: Tensor) -> dict[str, dict[str, float | None]]:
    """Each patient's Dice per structure, their slices scored as one stack (one Dice per case, as
    LiTS scores volumes); None where a patient's reference has none of a structure."""
    scores = {}
    for patient in patient_ids.unique().tolist():
        rows = patient_ids == patient
        # The stack as one image: (1, 2, n*R, R) pools the pixels of every slice of the patient.
        stack_predicted, stack_reference = predicted[rows].flatten(0, 1)[None], reference[rows].flatten(0, 1)[None]
        scores[str(patient)] = nan_means(dice_per_item(stack_predicted, stack_reference))
    return scores


def nan_means(dice: Tensor) -> dict[str, float | None]:
    """Per column of (N, 2) Dice, the mean of its finite entries (None if it has none)."""
    means = {}
    for structure, column in zip(STRUCTURES, dice.T):
        finite = column[~column.isnan()]
        means[structure] = float(finite.mean()) if len(finite) else None
    return means
