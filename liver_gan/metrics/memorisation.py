"""Memorisation check: is a synthetic slice a near-copy of a patient's training slice?

For every generated sample we find its nearest training slice twice: in pixel space and in Inception
feature space. Distances alone have no scale, so we compare them with a baseline that cannot be
memorisation: the nearest training slice of every real validation slice (other patients, never seen
in training). A generator that merely learned the distribution should sit about as far from the
training set as unseen patients do; one that copies sits closer.

The verdict (``memorisation_copying``) is taken in feature space only.  Pixel distance rewards blur:
a blurred mean image lies near every slice without copying any, while Inception features of a blur
are far from every sharp slice and those of a near-copy are near its original (Meehan et al., 2020,
and Akbar et al., 2025, likewise measure distances in a learned embedding).  It rests
on two tests of the held-out null hypothesis "the fakes lie as far from the training set as unseen
validation slices do", both one-sided towards copying:

- Meehan et al.'s data-copying statistic (AISTATS 2020, "A non-parametric test to detect
  data-copying in generative models"), in its single-cell form ``Z_U``: the Mann-Whitney U
  z-score of the fakes' nearest-training distances against the validation slices'.  Well below 0
  means the fakes as a whole sit closer to the training set than unseen patients (copying); above 0,
  farther (under-fitting: blur, artefacts).  Flagged below :data:`COPYING_Z`.
- Copies among mostly novel samples move ``Z_U`` little, so also the count of fakes closer to a
  training slice than every validation slice.  If fakes and validation slices were exchangeable, that
  count would be beta-binomial (n fakes, a success chance of Beta(1, V) for V validation slices:
  the chance of falling below the minimum of V draws); ``..._closer_than_val_p`` is its upper
  tail, flagged below :data:`COPYING_P`.

Adjacent validation slices of one patient are correlated, so both tests are somewhat liberal; the
thresholds are set far out for that reason.  The ratio of nearest to second-nearest training
distance is not used: adjacent slices of one patient are near-duplicates, so a copy's second
neighbour is close too.  The pixel figures stay as detail, with the closest-pairs grid to look at.

Definitions (the keys :func:`memorisation_report` returns):

- Pixel distance is the root-mean-square difference of two images in [-1, 1] units,
  ``||a - b||_2 / sqrt(R * R)``, so thresholds do not depend on the resolution (0 = identical,
  2 = one all black and one all white). Feature distance is the Euclidean distance between
  2048-d Inception pool3 features.
- ``fraction_closer_than_val``: the fraction of samples whose nearest-training-slice distance is
  strictly below the smallest nearest-training-slice distance of any validation slice, i.e. closer
  to a training slice than any unseen patient's slice is. We use the minimum rather than a low
  percentile so that the flag is conservative: a flagged sample beats every real validation slice.
- ``memorisation_feature_copy_z`` and ``memorisation_feature_closer_than_val_p``: the two tests
  above; ``memorisation_copying``: True when either is past its threshold.  All None without
  validation slices (``dataset.val_fraction=0``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from scipy import stats

from liver_gan.data.masks import ct
from liver_gan.errors import LiverGanError
from liver_gan.images import write_captioned_rows_png

QUANTILES = {"min": 0.0, "p05": 0.05, "p50": 0.5}
SPACES = ("pixel", "feature")
CLOSEST_PAIRS_FILE = "memorisation_closest_pairs.png"
# Bytes of one float64 chunk of queries or of references: a search over a whole training set
# (19k slices of 256 x 256 are 10 GB in float64) holds a few chunks, never the whole set.
CHUNK_BYTES = 64 * 2**20
# Rows per chunk at most: bounds the (query chunk x reference chunk) distance matrix to 32 MiB.
MAX_CHUNK_ROWS = 2048
# Meehan et al.'s Z_U below this is copying: a one-sided p of about 0.0013 under the held-out null.
COPYING_Z = -3.0
# The chance of so many fakes closer than every validation slice, below which it is copying.
COPYING_P = 0.001
VERDICT_KEYS = ("memorisation_feature_copy_z", "memorisation_feature_closer_than_val_p", "memorisation_copying")


def pixel_vectors(images: torch.Tensor) -> torch.Tensor:
    """Flattened images in float64, scaled so that the Euclidean distance is the RMS pixel difference."""
    if images.dim() != 4:
        raise LiverGanError(f"expected images shaped (N, C, H, W), got {tuple(images.shape)}")
    flat = images.flatten(1).double()
    return flat / math.sqrt(flat.shape[1])


def float64_rows(rows: torch.Tensor) -> torch.Tensor:
    """(N, ...) rows as flat float64 vectors: for identical rows the distance must come out as 0, not 1e-4."""
    return rows.flatten(1).double()


def chunk_rows(rows: torch.Tensor) -> int:
    """How many of these rows fit into one float64 chunk of CHUNK_BYTES (at least one)."""
    row_bytes = 8 * max(1, math.prod(rows.shape[1:]))
    return max(1, min(MAX_CHUNK_ROWS, CHUNK_BYTES // row_bytes))


def nearest_neighbours(
    queries: torch.Tensor,
    references: torch.Tensor,
    device: torch.device | str = "cpu",
    vectors: Callable[[torch.Tensor], torch.Tensor] = float64_rows,
) -> tuple[torch.Tensor, torch.Tensor]:
    """For each query row, the distance to and index of its nearest reference row (on the CPU).

    ``queries`` (generated or validation images: bounded by eval.num_samples and eval.max_real) go
    to ``device`` once, in their own dtype; ``references`` (the training set, possibly 19k slices)
    stream through it a chunk at a time, each chunk once.  Rows become float64 vectors through
    ``vectors`` a chunk at a time, so memory holds a chunk of each side and their distances.
    """
    if len(references) == 0:
        raise LiverGanError("the nearest-neighbour search has no reference (training) samples")
    if queries.shape[1:] != references.shape[1:]:
        raise LiverGanError(
            f"queries and references differ in width: {tuple(queries.shape[1:])} vs {tuple(references.shape[1:])}"
        )
    reference_rows, query_rows = chunk_rows(references), chunk_rows(queries)
    queries = queries.to(device)
    best = torch.full((len(queries),), math.inf, dtype=torch.float64, device=queries.device)
    best_index = torch.zeros(len(queries), dtype=torch.int64, device=queries.device)
    for start in range(0, len(references), reference_rows):
        reference = vectors(references[start : start + reference_rows].to(device))
        for query_start in range(0, len(queries), query_rows):
            rows = slice(query_start, query_start + query_rows)
            nearest = torch.cdist(vectors(queries[rows]), reference).min(dim=1)
            # Strictly closer only: a tie keeps the earlier reference, as one search over all would.
            closer = nearest.values < best[rows]
            best[rows] = torch.where(closer, nearest.values, best[rows])
            best_index[rows] = torch.where(closer, nearest.indices + start, best_index[rows])
    return best.cpu(), best_index.cpu()


def nearest_training_slices(
    images: torch.Tensor, train_images: torch.Tensor, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel RMS distance to, and index of, each image's nearest training slice."""
    if images.shape[1:] != train_images.shape[1:]:
        raise LiverGanError(
            f"generated images {tuple(images.shape[1:])} and training slices {tuple(train_images.shape[1:])} "
            "differ in shape; compare images of the same resolution"
        )
    return nearest_neighbours(images, train_images, device, vectors=pixel_vectors)


def nearest_training_features(
    features: np.ndarray, train_features: np.ndarray, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Euclidean distance from each (N, D) Inception feature row to its nearest training slice's."""
    return nearest_neighbours(_as_tensor(features), _as_tensor(train_features), device)[0]


def _as_tensor(features: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(features))


def distance_quantiles(distances: torch.Tensor) -> dict[str, float]:
    levels = torch.tensor(list(QUANTILES.values()), dtype=torch.float64)
    values = torch.quantile(distances.double(), levels)
    return {name: value.item() for name, value in zip(QUANTILES, values)}


def report_keys() -> tuple[str, ...]:
    """The keys :func:`memorisation_report` returns, for both spaces."""
    parts = [f"{side}_to_train_{quantile}" for side in ("fake", "val") for quantile in QUANTILES]
    per_space = [f"memorisation_{space}_{part}" for space in SPACES for part in [*parts, "fraction_closer_than_val"]]
    return (*per_space, *VERDICT_KEYS)


def compare_with_baseline(
    space: str, fake_to_train: torch.Tensor, val_to_train: torch.Tensor
) -> dict[str, float | None]:
    """Flat ``memorisation_<space>_*`` keys: both distance distributions and the flagged fraction.

    Without validation slices (``dataset.val_fraction=0``) there is no baseline: its keys are None.
    """
    report: dict[str, float | None] = {
        f"memorisation_{space}_fake_to_train_{quantile}": value
        for quantile, value in distance_quantiles(fake_to_train).items()
    }
    has_baseline = len(val_to_train) > 0
    baseline = distance_quantiles(val_to_train) if has_baseline else dict.fromkeys(QUANTILES)
    for quantile, value in baseline.items():
        report[f"memorisation_{space}_val_to_train_{quantile}"] = value
    closer = (fake_to_train < val_to_train.min()).double().mean().item() if has_baseline else None
    report[f"memorisation_{space}_fraction_closer_than_val"] = closer
    return report


def copy_z_score(fake_to_train: torch.Tensor, val_to_train: torch.Tensor) -> float:
    """Meehan et al.'s Z_U over one cell: the Mann-Whitney z-score of the fakes' distances against the
    validation slices' (negative: the fakes are the closer ones)."""
    fakes, vals = len(fake_to_train), len(val_to_train)
    ranks = stats.rankdata(np.concatenate([fake_to_train.numpy(), val_to_train.numpy()]))
    u_statistic = ranks[:fakes].sum() - fakes * (fakes + 1) / 2  # pairs (fake, val) with the fake farther
    spread = math.sqrt(fakes * vals * (fakes + vals + 1) / 12)
    return float((u_statistic - fakes * vals / 2) / spread)


def closer_than_val_p(fake_to_train: torch.Tensor, val_to_train: torch.Tensor) -> float:
    """The chance, were fakes and validation slices exchangeable, of at least this many fakes lying
    closer to the training set than every validation slice: the beta-binomial (n, 1, V) upper tail."""
    closer = int((fake_to_train < val_to_train.min()).sum())
    return float(stats.betabinom(len(fake_to_train), 1, len(val_to_train)).sf(closer - 1))


def copying_verdict(fake_to_train: torch.Tensor, val_to_train: torch.Tensor) -> dict[str, float | bool | None]:
    """The :data:`VERDICT_KEYS` of feature-space distances; None without validation slices."""
    if len(val_to_train) == 0 or len(fake_to_train) == 0:
        return dict.fromkeys(VERDICT_KEYS)
    z_score, p_value = copy_z_score(fake_to_train, val_to_train), closer_than_val_p(fake_to_train, val_to_train)
    return {
        "memorisation_feature_copy_z": z_score,
        "memorisation_feature_closer_than_val_p": p_value,
        "memorisation_copying": z_score < COPYING_Z or p_value < COPYING_P,
    }


def memorisation_report(
    fake_images: torch.Tensor,
    train_images: torch.Tensor,
    val_images: torch.Tensor,
    fake_features: np.ndarray,
    train_features: np.ndarray,
    val_features: np.ndarray,
    device: torch.device | str = "cpu",
    fake_nearest: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> dict[str, float | None]:
    """Pixel- and feature-space nearest-training-slice distances of the fakes vs the val baseline,
    and the feature-space copying verdict.

    ``train_features`` may be the features of a subset of the training slices (e.g. the cached FID
    reference pool); the pixel search always uses every training slice.  ``fake_nearest``, if given,
    is ``nearest_training_slices(fake_images, train_images)``, already computed by the caller.
    """
    if fake_nearest is None:
        fake_nearest = nearest_training_slices(fake_images, train_images, device)
    report = compare_with_baseline(
        "pixel",
        fake_nearest[0],
        nearest_training_slices(val_images, train_images, device)[0],
    )
    fake_to_train = nearest_training_features(fake_features, train_features, device)
    val_to_train = nearest_training_features(val_features, train_features, device)
    report |= compare_with_baseline("feature", fake_to_train, val_to_train)
    return report | copying_verdict(fake_to_train, val_to_train)


def save_closest_pairs(
    fake_images: torch.Tensor,
    train_images: torch.Tensor,
    path: Path,
    num_pairs: int = 16,
    device: torch.device | str = "cpu",
    fake_nearest: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> Path:
    """PNG grid of the fakes closest to a training slice: one row per pair, fake | nearest training
    slice, with their pixel RMS distance written under it.

    Rows are sorted from the closest pair down, so near-copies, if any, are at the top.
    ``fake_nearest`` as in :func:`memorisation_report`.
    """
    distances, indices = fake_nearest or nearest_training_slices(fake_images, train_images, device)
    closest = distances.argsort()[:num_pairs]
    pairs = torch.stack([fake_images[closest].cpu().float(), train_images[indices[closest]].cpu().float()], dim=1)
    captions = [f"pixel RMS {distance:.4f}" for distance in distances[closest].tolist()]
    write_captioned_rows_png(list(pairs), captions, Path(path))
    return Path(path)


def memorised_mask(samples: torch.Tensor, train_images: torch.Tensor, threshold: float) -> torch.Tensor:
    """True for each sample whose pixel RMS distance to its nearest training slice is below ``threshold``."""
    return nearest_training_slices(samples, train_images)[0] < threshold


def reject_memorised(samples: torch.Tensor, train_images: torch.Tensor, threshold: float) -> tuple[torch.Tensor, int]:
    """Drop samples closer than ``threshold`` (pixel RMS, [-1, 1] units) to a training slice.

    Samples with mask channels are compared by their CT channel with the (CT) training slices,
    and dropped with their masks.  Returns the kept samples, in their original order, and how
    many were dropped.
    """
    if threshold < 0:
        raise LiverGanError(f"sample.memorisation_threshold must be >= 0, got {threshold}")
    memorised = memorised_mask(ct(samples), train_images, threshold)
    return samples[~memorised], int(memorised.sum())


def validation_threshold(train_images: torch.Tensor, val_images: torch.Tensor) -> float:
    """The smallest pixel distance from any real validation slice to the training set.

    A sample closer than this is nearer to a training slice than any unseen patient's slice is; it
    is the data's own default threshold for :func:`reject_memorised`.
    """
    if len(val_images) == 0:
        raise LiverGanError("the validation split is empty; set sample.memorisation_threshold explicitly")
    return nearest_training_slices(val_images, train_images)[0].min().item()
