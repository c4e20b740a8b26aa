"""Improved precision/recall (Kynkäänniemi et al. 2019) on feature sets with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from liver_gan.errors import LiverGanError
from liver_gan.metrics.precision_recall import precision_recall


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
