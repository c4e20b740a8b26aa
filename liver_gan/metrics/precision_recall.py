"""Improved precision and recall (Kynkäänniemi et al., NeurIPS 2019), and density and coverage
(Naeem et al., ICML 2020), of generated against real features.

Each set of Inception features approximates its manifold by the union of balls around its points,
each ball reaching the point's k-th nearest neighbour within the same set. Precision is the fraction
of generated samples inside the real manifold (are the fakes realistic?); recall is the fraction of
real samples inside the generated manifold (does the generator cover the data?). A sharp but
mode-collapsed generator has high precision and low recall; a diverse but blurry one the reverse.
FID alone folds both failures into one number.

Density and coverage use only the real balls, which outliers inflate less than the fakes' own: density
counts how many real balls hold each fake (about 1 for fakes distributed like the reals, above 1
where fakes crowd dense real regions, unbounded); coverage is the fraction of real balls that hold at
least one fake.
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


def checked_features(
    real_features: np.ndarray, fake_features: np.ndarray, k: int, what: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Both sets as float64 tensors; refused unless they are (N, D) of one width with more than k rows."""
    real = _as_tensor(real_features, "real_features")
    fake = _as_tensor(fake_features, "fake_features")
    if real.shape[1] != fake.shape[1]:
        raise LiverGanError(f"real and fake features differ in width: {real.shape[1]} vs {fake.shape[1]}")
    if k < 1 or min(len(real), len(fake)) <= k:
        raise LiverGanError(
            f"{what} with k={k} needs more than k real and fake samples "
            f"(got {len(real)} real, {len(fake)} fake); raise eval.num_samples"
        )
    return real, fake


def precision_recall(real_features: np.ndarray, fake_features: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Kynkäänniemi et al.'s (precision, recall) of ``fake_features`` against ``real_features``.

    Both are (N, 2048) Inception pool3 features, the same ones FID uses; k=3 is the paper's default.
    """
    real, fake = checked_features(real_features, fake_features, k, "precision/recall")
    precision = manifold_coverage(real, kth_neighbour_radii(real, k), fake)
    recall = manifold_coverage(fake, kth_neighbour_radii(fake, k), real)
    return precision, recall


def density_coverage(real_features: np.ndarray, fake_features: np.ndarray, k: int = 5) -> tuple[float, float]:
    """Naeem et al.'s (density, coverage) of ``fake_features`` against ``real_features``; k=5 as in the paper.

    density = 1/(kM) sum_j #{i : |f_j - r_i| <= radius_i} over the M fakes f_j;
    coverage = 1/N #{i : min_j |f_j - r_i| <= radius_i} over the N reals r_i,
    with radius_i the distance from r_i to its k-th nearest real neighbour.
    """
    real, fake = checked_features(real_features, fake_features, k, "density/coverage")
    radii = kth_neighbour_radii(real, k)
    balls_holding = []
    for start in range(0, len(fake), _CHUNK):
        inside = torch.cdist(fake[start : start + _CHUNK], real) <= radii.unsqueeze(0)
        balls_holding.append(inside.sum(dim=1))
    density = torch.cat(balls_holding).double().sum().item() / (k * len(fake))
    covered = []
    for start in range(0, len(real), _CHUNK):
        nearest_fake = torch.cdist(real[start : start + _CHUNK], fake).min(dim=1).values
        covered.append(nearest_fake <= radii[start : start + _CHUNK])
    return density, torch.cat(covered).double().mean().item()
