"""Fidelity, diversity and memorisation next to FID/KID: the flat keys they add to metrics.json."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from liver_gan.metrics.diversity import mean_pairwise_cosine_distance, mean_pairwise_ms_ssim
from liver_gan.metrics.memorisation import memorisation_report, nearest_training_slices, save_closest_pairs
from liver_gan.metrics.precision_recall import precision_recall

log = logging.getLogger(__name__)

CLOSEST_PAIRS_FILE = "memorisation_closest_pairs.png"


def fidelity_report(
    fake_images: torch.Tensor,
    fake_features: np.ndarray,
    real_features: np.ndarray,
    train_images: torch.Tensor,
    train_features: np.ndarray,
    val_images: torch.Tensor,
    val_features: np.ndarray,
    run_dir: Path,
    seed: int = 0,
    k: int = 3,
    num_pairs: int = 1000,
    device: torch.device | str = "cpu",
) -> dict[str, float | str | None]:
    """Precision/recall, diversity (with real baselines) and the memorisation check.

    ``real_features`` are the FID reference pool's features; ``train_features`` and ``val_features``
    belong to (subsets of) the real training and validation slices of the same subset. Writes
    ``<run_dir>/memorisation_closest_pairs.png`` and returns flat keys for metrics.json; every value
    but ``memorisation_closest_pairs`` (a file name) is a float for TensorBoard's HPARAMS table, or
    None where it cannot be measured: precision and recall with k or fewer images on a side, the
    ``memorisation_*_val_to_train_*`` baseline and ``*_fraction_closer_than_val`` without validation slices.
    """
    precision = recall = None
    if min(len(real_features), len(fake_features)) > k:
        precision, recall = precision_recall(real_features, fake_features, k=k)
    else:
        log.warning("precision/recall with k=%d needs more than %d real and generated images; left out", k, k)
    # The fakes' nearest training slices serve both the closest-pairs grid and the memorisation report.
    fake_nearest = nearest_training_slices(fake_images, train_images, device)
    grid = save_closest_pairs(
        fake_images, train_images, Path(run_dir) / CLOSEST_PAIRS_FILE, device=device, fake_nearest=fake_nearest
    )
    return {
        "precision": precision,
        "recall": recall,
        "diversity_ms_ssim": mean_pairwise_ms_ssim(fake_images, num_pairs, seed),
        "diversity_ms_ssim_real": mean_pairwise_ms_ssim(train_images, num_pairs, seed),
        "diversity_feature_cosine": mean_pairwise_cosine_distance(fake_features),
        "diversity_feature_cosine_real": mean_pairwise_cosine_distance(real_features),
        **memorisation_report(
            fake_images, train_images, val_images, fake_features, train_features, val_features, device, fake_nearest
        ),
        "memorisation_closest_pairs": grid.name,
    }
