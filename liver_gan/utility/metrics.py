"""Classification metrics on the real validation slices: AUC (from ranks), accuracy,
sensitivity (tumor slices found) and specificity (healthy slices cleared)."""

from __future__ import annotations

import torch
from scipy.stats import rankdata
from torch import Tensor

from liver_gan.data.labels import HEALTHY, TUMOR
from liver_gan.errors import LiverGanError

METRICS = ("auc", "accuracy", "sensitivity", "specificity")


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
