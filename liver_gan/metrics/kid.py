"""Kernel Inception Distance: the unbiased polynomial-kernel MMD² of Bińkowski et al. (2018).

Unlike FID it has no bias at small N, so it stays meaningful for a few hundred images; it is
averaged over random equal-size subsets, whose spread is reported as its std.
"""

from __future__ import annotations

import numpy as np

from liver_gan.errors import LiverGanError


def polynomial_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """k(x, y) = (x·y / d + 1)³, the kernel KID is defined with."""
    return (a @ b.T / a.shape[1] + 1) ** 3


def unbiased_mmd2(a: np.ndarray, b: np.ndarray) -> float:
    """Unbiased MMD² estimate: within-set kernel means leave out the diagonal (x with itself)."""
    m, n = len(a), len(b)
    k_aa, k_bb, k_ab = polynomial_kernel(a, a), polynomial_kernel(b, b), polynomial_kernel(a, b)
    within_a = (k_aa.sum() - np.trace(k_aa)) / (m * (m - 1))
    within_b = (k_bb.sum() - np.trace(k_bb)) / (n * (n - 1))
    return float(within_a + within_b - 2 * k_ab.mean())


def kernel_inception_distance(
    features_a: np.ndarray, features_b: np.ndarray, num_subsets: int, subset_size: int, seed: int
) -> tuple[float, float]:
    """Mean and std of the MMD² over ``num_subsets`` seeded subsets of min(subset_size, n_a, n_b)."""
    size = min(subset_size, len(features_a), len(features_b))
    if size < 2:
        raise LiverGanError(
            f"KID needs subsets of at least 2 images, got {size}; raise eval.kid.subset_size or the image counts"
        )
    if num_subsets < 1:
        raise LiverGanError(f"eval.kid.num_subsets={num_subsets} must be at least 1")
    a, b = np.asarray(features_a, dtype=np.float64), np.asarray(features_b, dtype=np.float64)
    rng = np.random.default_rng(seed)
    values = [
        unbiased_mmd2(a[rng.choice(len(a), size, replace=False)], b[rng.choice(len(b), size, replace=False)])
        for _ in range(num_subsets)
    ]
    return float(np.mean(values)), float(np.std(values))
