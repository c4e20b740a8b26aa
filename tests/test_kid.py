"""KID: the unbiased polynomial-kernel MMD², on random features (no Inception needed)."""

from __future__ import annotations

import numpy as np
import pytest

from liver_gan.errors import LiverGanError
from liver_gan.metrics.kid import kernel_inception_distance, polynomial_kernel, unbiased_mmd2


def gaussian_features(n: int, shift: float = 0.0, seed: int = 0, dim: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).normal(loc=shift, size=(n, dim))


def test_polynomial_kernel_is_the_cubed_scaled_dot_product_plus_one() -> None:
    a = np.array([[1.0, 2.0]])
    b = np.array([[3.0, -1.0], [0.0, 0.0]])
    assert polynomial_kernel(a, b) == pytest.approx(np.array([[(1 / 2 + 1) ** 3, 1.0]]))


def test_unbiased_mmd2_leaves_out_only_the_within_set_diagonals() -> None:
    a = gaussian_features(5, seed=1, dim=3)
    b = gaussian_features(4, seed=2, dim=3)
    k_aa, k_bb, k_ab = polynomial_kernel(a, a), polynomial_kernel(b, b), polynomial_kernel(a, b)
    off_diagonal = lambda k: k[~np.eye(len(k), dtype=bool)].mean()  # noqa: E731
    expected = off_diagonal(k_aa) + off_diagonal(k_bb) - 2 * k_ab.mean()
    assert unbiased_mmd2(a, b) == pytest.approx(expected)


def test_kid_is_about_zero_for_the_same_distribution_and_grows_with_the_shift() -> None:
    reference = gaussian_features(400)
    same_set = kernel_inception_distance(reference, reference, num_subsets=20, subset_size=100, seed=0)
    same_distribution = kernel_inception_distance(reference, gaussian_features(400, seed=1), 20, 100, 0)
    shifted = [kernel_inception_distance(reference, gaussian_features(400, shift, seed=1), 20, 100, 0) for shift in (0.3, 0.6)]
    for mean, std in (same_set, same_distribution):
        assert abs(mean) < 3 * std + 1e-3
    assert 0 < shifted[0][0] - 3 * shifted[0][1]
    assert shifted[1][0] > shifted[0][0]


def test_kid_is_reproducible_from_its_seed_and_varies_with_it() -> None:
    a, b = gaussian_features(60), gaussian_features(60, 0.2, seed=1)
    assert kernel_inception_distance(a, b, 5, 20, seed=3) == kernel_inception_distance(a, b, 5, 20, seed=3)
    assert kernel_inception_distance(a, b, 5, 20, seed=3) != kernel_inception_distance(a, b, 5, 20, seed=4)


def test_subsets_shrink_to_the_smaller_set() -> None:
    a, b = gaussian_features(10), gaussian_features(7, seed=1)
    # With subsets as large as both sets there is nothing left to draw: every subset gives one value.
    mean, std = kernel_inception_distance(a[:7], b, num_subsets=4, subset_size=1000, seed=0)
    assert std == pytest.approx(0.0, abs=1e-12)
    assert mean == pytest.approx(unbiased_mmd2(a[:7], b))


@pytest.mark.parametrize(("sizes", "num_subsets", "option"), [((1, 10), 5, "subset_size"), ((10, 10), 0, "num_subsets")])
def test_too_few_images_or_subsets_is_a_clear_error(sizes: tuple[int, int], num_subsets: int, option: str) -> None:
    with pytest.raises(LiverGanError, match=option):
        kernel_inception_distance(gaussian_features(sizes[0]), gaussian_features(sizes[1]), num_subsets, 100, 0)
