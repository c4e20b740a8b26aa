"""Healthy-vs-tumor classification: a small CNN, its training (the same recipe for every arm and
seed) and its metrics on the real validation slices: AUC (from ranks), accuracy, sensitivity
(tumor slices found) and specificity (healthy slices cleared).

The classifier trains by the recipe every downstream network shares (liver_gan/downstream/supervised.py).
"""

from __future__ import annotations

from typing import Sequence

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from scipy.stats import rankdata
from torch import Tensor, nn

from liver_gan.data.labels import HEALTHY, TUMOR
from liver_gan.downstream.supervised import train_supervised
from liver_gan.errors import LiverGanError

METRICS = ("auc", "accuracy", "sensitivity", "specificity")


class SmallCNN(nn.Module):
    """Conv-BatchNorm-ReLU-MaxPool blocks, global average pooling, dropout, one tumor logit.

    Global pooling makes the same network work at 64, 128 and 256 pixels.
    """

    def __init__(self, resolution: int, channels: Sequence[int] = (16, 32, 64), dropout: float = 0.2) -> None:
        super().__init__()
        if resolution < 2 ** len(channels):
            raise LiverGanError(f"classifier.model.channels has {len(channels)} pooling blocks, too many for {resolution} px")
        layers: list[nn.Module] = []
        in_channels = 1
        for out_channels in channels:
            layers += [
                nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
                nn.BatchNorm2d(out_channels),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            in_channels = out_channels
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(in_channels, 1))

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.features(images)).squeeze(1)


def random_flips(images: Tensor, cfg: DictConfig, rng: torch.Generator) -> Tensor:
    """Flip each image left-right and/or up-down with probability 1/2, as ``cfg`` allows."""
    for enabled, dim in ((cfg.horizontal_flip, 3), (cfg.vertical_flip, 2)):
        if enabled:
            flip = torch.rand(len(images), generator=rng) < 0.5
            images = torch.where(flip.view(-1, 1, 1, 1).to(images.device), images.flip(dim), images)
    return images


def train_classifier(
    cfg: DictConfig, images: Tensor, labels: Tensor, resolution: int, device: torch.device, seed: int
) -> nn.Module:
    """Train ``cfg.model`` on (images, labels) with Adam and a class-balanced BCE loss.

    The loss weighs tumor slices by healthy/tumor, so a 0.5 threshold suits both classes whatever
    the mix of the arm. ``seed`` fixes the initialisation, the batch order and the flips.
    """
    num_tumor = int(labels.sum())
    if num_tumor == 0 or num_tumor == len(labels):
        raise LiverGanError("the classifier's training slices hold only one class; the dataset needs healthy and tumor slices")
    torch.manual_seed(seed)
    model = instantiate(cfg.model, resolution=resolution).to(device)
    pos_weight = torch.tensor((len(labels) - num_tumor) / num_tumor, device=device)
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=pos_weight)
    rng = torch.Generator().manual_seed(seed)

    def flipped(x: Tensor, y: Tensor, rng: torch.Generator) -> tuple[Tensor, Tensor]:
        return random_flips(x, cfg, rng), y

    return train_supervised(model, loss_fn, images.to(device), labels.float().to(device), cfg, rng, flipped)


@torch.no_grad()
def tumor_probabilities(model: nn.Module, images: Tensor, device: torch.device, batch_size: int = 256) -> Tensor:
    """P(tumor) of each image, on the CPU."""
    model.eval()
    return torch.cat([torch.sigmoid(model(batch.to(device))).cpu() for batch in images.split(batch_size)])


def roc_auc(scores: Tensor, labels: Tensor) -> float:
    """Area under the ROC curve as the Mann-Whitney U statistic: the probability that a random
    tumor slice scores above a random healthy one, ties counting one half (average ranks)."""
    positive = labels == TUMOR
    num_positive, num_negative = int(positive.sum()), int((~positive).sum())
    if num_positive == 0 or num_negative == 0:
        raise LiverGanError("the real validation slices hold only one class, so AUC is undefined; raise dataset.val_fraction")
    ranks = torch.from_numpy(rankdata(scores.double().numpy(), method="average"))
    rank_sum = ranks[positive].sum().item()
    return (rank_sum - num_positive * (num_positive + 1) / 2) / (num_positive * num_negative)


def classification_metrics(probabilities: Tensor, labels: Tensor, threshold: float = 0.5) -> dict[str, float]:
    predicted_tumor = probabilities >= threshold
    tumor, healthy = labels == TUMOR, labels == HEALTHY
    return {
        "auc": roc_auc(probabilities, labels),
        "accuracy": (predicted_tumor == tumor).double().mean().item(),
        "sensitivity": predicted_tumor[tumor].double().mean().item(),
        "specificity": (~predicted_tumor[healthy]).double().mean().item(),
    }
