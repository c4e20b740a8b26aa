"""Diversity among synthetic images, to catch mode collapse (two scores, both cheap).

- Mean pairwise MS-SSIM (Wang et al. 2003) over random pairs of images: 1 means every pair is
  identical, so a collapsed generator scores close to 1. Odena et al. (2017) used it this way.
- Mean pairwise cosine distance of Inception features: 0 when all features are parallel, so a
  collapsed generator scores close to 0. It reuses the features FID already computed.

Neither number means much on its own: CT slices share a black background and a body outline, so
real slices are already structurally similar. Report each next to the same score on real slices
(the ``_real`` baseline) and read the gap.

MS-SSIM at 64x64: the standard five scales with an 11x11 Gaussian window (sigma 1.5) would shrink a
64-pixel image to 4 pixels, smaller than the window. We keep the window and use as many scales as
leave at least one full window at the coarsest scale (3 at 64, 4 at 128, 5 at 256), taking the first
of Wang et al.'s five exponents and renormalising them to sum to 1. Negative contrast-structure terms
are clamped to 0 before the fractional powers (as pytorch-msssim does), which keeps the score real.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from liver_gan.errors import LiverGanError

WINDOW_SIZE = 11
WINDOW_SIGMA = 1.5
SCALE_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # Wang et al. 2003, finest scale first
# SSIM's stabilising constants for a data range of 1 (images are mapped from [-1, 1] to [0, 1]).
C1 = 0.01**2
C2 = 0.03**2
_PAIR_CHUNK = 256


def num_scales(resolution: int) -> int:
    """Scales that keep a whole window at the coarsest one: 3 at 64, 4 at 128, 5 at 256."""
    scales = 0
    while scales < len(SCALE_WEIGHTS) and resolution // 2**scales >= WINDOW_SIZE:
        scales += 1
    if scales == 0:
        raise LiverGanError(f"MS-SSIM needs images of at least {WINDOW_SIZE} pixels, got {resolution}")
    return scales


def _gaussian_profile(device: torch.device) -> torch.Tensor:
    """The window's 1-D profile: the 2-D Gaussian window is its outer product with itself."""
    coords = torch.arange(WINDOW_SIZE, dtype=torch.float64, device=device) - (WINDOW_SIZE - 1) / 2
    profile = torch.exp(-(coords**2) / (2 * WINDOW_SIGMA**2))
    return profile / profile.sum()


def _window_means(maps: torch.Tensor, profile: torch.Tensor) -> torch.Tensor:
    """Each channel of (N, C, H, W) ``maps`` filtered by the 2-D Gaussian window, "valid" borders.

    The window is separable: a row pass and a column pass (2 x 11 taps per pixel instead of 121),
    all channels in one grouped call each.
    """
    channels = maps.shape[1]
    rows = profile.view(1, 1, 1, WINDOW_SIZE).expand(channels, 1, 1, WINDOW_SIZE)
    columns = profile.view(1, 1, WINDOW_SIZE, 1).expand(channels, 1, WINDOW_SIZE, 1)
    return F.conv2d(F.conv2d(maps, rows, groups=channels), columns, groups=channels)


def _ssim_terms(a: torch.Tensor, b: torch.Tensor, profile: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image mean luminance and contrast-structure terms of SSIM at one scale."""
    maps = torch.cat([a, b, a * a, b * b, a * b], dim=1)
    mu_a, mu_b, mean_aa, mean_bb, mean_ab = _window_means(maps, profile).split(1, dim=1)
    var_a = mean_aa - mu_a**2
    var_b = mean_bb - mu_b**2
    covariance = mean_ab - mu_a * mu_b
    luminance = (2 * mu_a * mu_b + C1) / (mu_a**2 + mu_b**2 + C1)
    contrast_structure = (2 * covariance + C2) / (var_a + var_b + C2)
    return luminance.flatten(1).mean(1), contrast_structure.flatten(1).mean(1)


def ms_ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """MS-SSIM of each pair (a[i], b[i]); images (N, 1, R, R) in [-1, 1]; returns (N,)."""
    a = (a.double() + 1) / 2
    b = (b.double() + 1) / 2
    scales = num_scales(a.shape[-1])
    weights = torch.tensor(SCALE_WEIGHTS[:scales], dtype=torch.float64, device=a.device)
    weights = weights / weights.sum()
    profile = _gaussian_profile(a.device)
    score = torch.ones(len(a), dtype=torch.float64, device=a.device)
    for scale in range(scales):
        luminance, contrast_structure = _ssim_terms(a, b, profile)
        term = contrast_structure if scale < scales - 1 else luminance * contrast_structure
        score = score * term.clamp(min=0) ** weights[scale]
        a, b = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
    return score


def random_pairs(count: int, num_pairs: int, seed: int) -> torch.Tensor:
    """``num_pairs`` index pairs (i, j), i != j, drawn with a fixed seed; all pairs if fewer exist."""
    if count < 2:
        raise LiverGanError(f"diversity needs at least 2 images, got {count}")
    if count * (count - 1) // 2 <= num_pairs:
        return torch.combinations(torch.arange(count), 2)
    generator = torch.Generator().manual_seed(seed)
    first = torch.randint(count, (num_pairs,), generator=generator)
    # An offset in [1, count) guarantees a different second image.
    second = (first + torch.randint(1, count, (num_pairs,), generator=generator)) % count
    return torch.stack([first, second], dim=1)


def mean_pairwise_ms_ssim(images: torch.Tensor, num_pairs: int = 1000, seed: int = 0) -> float:
    """Mean MS-SSIM over random pairs of ``images`` (N, 1, R, R) in [-1, 1]; high = little diversity."""
    pairs = random_pairs(len(images), num_pairs, seed)
    scores = [
        ms_ssim(images[chunk[:, 0]], images[chunk[:, 1]]) for chunk in pairs.split(_PAIR_CHUNK)
    ]
    return torch.cat(scores).mean().item()


def mean_pairwise_cosine_distance(features: np.ndarray) -> float:
    """Mean of 1 - cos(f_i, f_j) over all pairs i != j; low = little diversity.

    For unit vectors the sum over all ordered pairs is |sum_i f_i|^2 - N, so no N x N matrix is built.
    """
    unit = torch.from_numpy(np.asarray(features, dtype=np.float64))
    count = len(unit)
    if count < 2:
        raise LiverGanError(f"diversity needs at least 2 feature vectors, got {count}")
    unit = unit / unit.norm(dim=1, keepdim=True).clamp(min=1e-12)
    mean_similarity = (unit.sum(0).square().sum() - unit.square().sum()) / (count * (count - 1))
    return 1.0 - mean_similarity.item()
