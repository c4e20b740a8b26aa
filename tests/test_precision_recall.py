"""Improved precision/recall (Kynkäänniemi et al. 2019) and density/coverage (Naeem et al. 2020) on
feature sets with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from liver_gan.errors import LiverGanError
from liver_gan.metrics.precision_recall import density_coverage, precision_recall


def _features(count: int, seed: int, dims: int = 8) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(count, dims))


def test_identical_sets_have_precision_and_recall_one() -> None:
    real = _features(300, seed=0)
    assert precision_recall(real, real.copy(), k=3) == (1.0, 1.0)


def test_independent_draws_of_one_distribution_score_high() -> None:
    precision, recall = precision_recall(_features(400, seed=0), _features(400, seed=1))
    assert precision > 0.8 and recall > 0.8


def test_precision_and_recall_fall_as_the_fakes_shift() -> None:
    real = _features(400, seed=0)
    fake = _features(400, seed=1)
    scores = [precision_recall(real, fake + shift) for shift in (0.0, 1.0, 3.0)]
    precisions, recalls = zip(*scores)
    assert precisions[0] > precisions[1] > precisions[2]
    assert recalls[0] > recalls[1] > recalls[2]
    assert precisions[2] < 0.1 and recalls[2] < 0.1


def test_mode_collapse_keeps_precision_but_loses_recall() -> None:
    real = _features(400, seed=0)
    # Every fake is a slight perturbation of one of five real samples: realistic, not diverse.
    rng = np.random.default_rng(2)
    fake = real[rng.integers(0, 5, size=400)] + 0.01 * rng.normal(size=(400, 8))
    precision, recall = precision_recall(real, fake)
    assert precision > 0.9
    assert recall < 0.2


def test_too_few_samples_for_k_is_a_user_error() -> None:
    with pytest.raises(LiverGanError, match="k=3"):
        precision_recall(_features(3, seed=0), _features(10, seed=1), k=3)


# --- density and coverage (Naeem et al. 2020) ---------------------------------------------------


def on_a_line(*positions: float) -> np.ndarray:
    """Points (x, 0): their distances are differences of x, easy to count by hand."""
    return np.array([[x, 0.0] for x in positions])


def test_density_and_coverage_count_the_real_balls_by_hand() -> None:
    # k=1 radii: 0 -> 1, 1 -> 1, 3 -> 2.  The fake at 0.5 lies in the balls of 0 and 1, the one at
    # 10 in none: density (2 + 0) / (1 * 2) = 1.  The balls of 0 and 1 hold a fake, 3's does not: 2/3.
    density, coverage = density_coverage(on_a_line(0, 1, 3), on_a_line(0.5, 10), k=1)
    assert density == pytest.approx(1.0) and coverage == pytest.approx(2 / 3)


def test_fakes_crowding_one_dense_spot_score_density_above_one() -> None:
    # k=2 radii: 0 -> 2, 1 -> 1, 2 -> 1, 3 -> 2; 1.5 lies in all four balls: density 3 * 4 / (2 * 3).
    density, coverage = density_coverage(on_a_line(0, 1, 2, 3), on_a_line(1.5, 1.5, 1.5), k=2)
    assert density == pytest.approx(2.0) and coverage == pytest.approx(1.0)


def test_independent_draws_score_density_about_one_and_high_coverage() -> None:
    density, coverage = density_coverage(_features(400, seed=0), _features(400, seed=1))
    assert 0.7 < density < 1.3 and coverage > 0.8


def test_mode_collapse_keeps_density_but_loses_coverage() -> None:
    real = _features(400, seed=0)
    rng = np.random.default_rng(2)
    fake = real[rng.integers(0, 5, size=400)] + 0.01 * rng.normal(size=(400, 8))
    density, coverage = density_coverage(real, fake)
    assert density > 0.5 and coverage < 0.2


def test_too_few_samples_for_density_coverage_is_a_user_error() -> None:
    with pytest.raises(LiverGanError, match="density/coverage with k=5"):
        density_coverage(_features(5, seed=0), _features(10, seed=1), k=5)
