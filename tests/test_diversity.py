"""Diversity scores: MS-SSIM at small resolutions and the feature-space cosine distance."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from liver_gan.errors import LiverGanError
from liver_gan.metrics.diversity import (
    mean_pairwise_cosine_distance,
    mean_pairwise_ms_ssim,
    ms_ssim,
    num_scales,
    random_pairs,
)


def _smooth_images(count: int, resolution: int, seed: int) -> torch.Tensor:
    """Blurred noise in [-1, 1]: image-like structure at several scales."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.rand(count, 1, resolution // 4, resolution // 4, generator=generator) * 2 - 1
    return F.interpolate(noise, size=resolution, mode="bilinear", align_corners=False)


@pytest.mark.parametrize(("resolution", "scales"), [(16, 1), (64, 3), (128, 4), (256, 5)])
def test_scales_leave_a_whole_window_at_the_coarsest_scale(resolution: int, scales: int) -> None:
    assert num_scales(resolution) == scales


def test_images_too_small_for_one_window_are_refused() -> None:
    with pytest.raises(LiverGanError, match="at least 11"):
        num_scales(8)


def test_ms_ssim_is_one_for_identical_images_and_lower_for_different_ones() -> None:
    images = _smooth_images(4, 64, seed=0)
    assert torch.allclose(ms_ssim(images, images), torch.ones(4, dtype=torch.float64))
    others = _smooth_images(4, 64, seed=1)
    scores = ms_ssim(images, others)
    assert ((scores >= 0) & (scores < 0.9)).all()
    assert torch.allclose(scores, ms_ssim(others, images))


def test_a_collapsed_set_scores_one_and_a_diverse_set_lower() -> None:
    diverse = _smooth_images(20, 64, seed=0)
    collapsed = diverse[:1].expand(20, -1, -1, -1)
    assert mean_pairwise_ms_ssim(collapsed, num_pairs=50) == pytest.approx(1.0)
    assert mean_pairwise_ms_ssim(diverse, num_pairs=50) < 0.8


def test_random_pairs_never_pair_an_image_with_itself() -> None:
    pairs = random_pairs(10, num_pairs=500, seed=0)
    assert pairs.shape == (45, 2)  # fewer pairs exist than were asked for: all of them
    pairs = random_pairs(1000, num_pairs=500, seed=0)
    assert pairs.shape == (500, 2)
    assert (pairs[:, 0] != pairs[:, 1]).all()
    assert torch.equal(pairs, random_pairs(1000, num_pairs=500, seed=0))


def test_cosine_distance_matches_the_brute_force_mean_over_pairs() -> None:
    features = np.abs(np.random.default_rng(0).normal(size=(30, 16)))
    unit = features / np.linalg.norm(features, axis=1, keepdims=True)
    similarity = unit @ unit.T
    brute_force = 1 - similarity[~np.eye(30, dtype=bool)].mean()
    assert mean_pairwise_cosine_distance(features) == pytest.approx(brute_force)
    assert mean_pairwise_cosine_distance(np.tile(features[:1], (30, 1))) == pytest.approx(0.0, abs=1e-12)
