"""Improved precision and recall for generative models (Kynkäänniemi et al., NeurIPS 2019).

Each set of Inception features approximates its manifold by the union of balls around its points,
each ball reaching the point's k-th nearest neighbour within the same set. Precision is the fraction
of generated samples inside the real manifold (are the fakes realistic?); recall is the fraction of
real samples inside the generated manifold (does the generator cover the data?). A sharp but
mode-collapsed generator has high precision and low recall; a diverse but blurry one the reverse.
FID alone folds both failures into one number.
"""

from __future__ import annotations

import numpy as np
import torch

from liver_gan.errors import LiverGanError

# Rows of the query set per torch.cdist call: 1024 x 2048 float64 distances stay near 16 MiB.
_CHUNK = 1024


def _as_tensor(features: np.ndarray, name: str) -> torch.Tensor:
    array = np.asarray(features)
    if array.ndim != 2:
        raise LiverGanError(f"{name} must be a 2-D (N, D) feature array, got shape {array.shape}")
    # float64: for identical sets the distance to the matching point must come out as 0, not 1e-4.
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float64))


def kth_neighbour_radii(features: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from every point to its k-th nearest neighbour in the same set (itself excluded)."""
    radii = []
    for start in range(0, len(features), _CHUNK):
        distances = torch.cdist(features[start : start + _CHUNK], features)
        # The k+1 smallest include the point itself at distance 0.
        radii.append(distances.topk(k + 1, dim=1, largest=False).values[:, k])
    return torch.cat(radii)


def manifold_coverage(manifold: torch.Tensor, radii: torch.Tensor, queries: torch.Tensor) -> float:
    """Fraction of ``queries`` that lie within the k-NN ball of at least one ``manifold`` point."""
    inside = []
    for start in range(0, len(queries), _CHUNK):
        distances = torch.cdist(queries[start : start + _CHUNK], manifold)
        inside.append((distances <= radii.unsqueeze(0)).any(dim=1))
    return torch.cat(inside).double().mean().item()


def precision_recall(real_features: np.ndarray, fake_features: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Kynkäänniemi et al.'s (precision, recall) of ``fake_features`` against ``real_features``.

    Both are (N, 2048) Inception pool3 features, the same ones FID uses; k=3 is the paper's default.
    """
    real = _as_tensor(real_features, "real_features")
    fake = _as_tensor(fake_features, "fake_features")
    if real.shape[1] != fake.shape[1]:
        raise LiverGanError(f"real and fake features differ in width: {real.shape[1]} vs {fake.shape[1]}")
    if k < 1 or min(len(real), len(fake)) <= k:
        raise LiverGanError(
            f"precision/recall with k={k} needs more than k real and fake samples "
            f"(got {len(real)} real, {len(fake)} fake); raise eval.num_samples"
        )
    precision = manifold_coverage(real, kth_neighbour_radii(real, k), fake)
    recall = manifold_coverage(fake, kth_neighbour_radii(fake, k), real)
    return precision, recall
