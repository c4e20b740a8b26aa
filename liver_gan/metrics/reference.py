"""Cached Inception features and FID statistics of the real images.

Every run on the same data, and every job of a sweep, compares against the same reals, so their
features are computed once and kept under ``eval.cache_dir``.  An entry is keyed by the prepared
dataset, subset, real pool, image count, resolution and the weights' sha256, and by the sha256
of the 8-bit pixels themselves: the dataset key does not cover the train/val split, which
depends on the run's seed.  Per-class features are rows of the same entry (the real labels are a fixed
function of the dataset), so they need no entry of their own.  Entries are written atomically
under a lock, so concurrent jobs compute an entry once and never read a half-written one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path
from typing import Callable

import numpy as np

from torch import Tensor

from liver_gan.atomic import atomic_directory, build_lock
from liver_gan.images import to_uint8
from liver_gan.metrics.fid import Statistics, feature_statistics

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ReferenceKey:
    """What the real features depend on."""

    dataset_key: str
    subset: str
    real_pool: str
    num_images: int
    resolution: int
    weights_sha256: str
    pixels_sha256: str  # of to_uint8(images), exactly what Inception sees

    def digest(self) -> str:
        fields = json.dumps(dataclasses.asdict(self), sort_keys=True)
        return hashlib.sha256(fields.encode()).hexdigest()[:32]


@dataclasses.dataclass(frozen=True)
class ReferenceStatistics:
    """Features (float32, N x 2048, for KID and per-class splits) and their FID statistics."""

    features: np.ndarray
    statistics: Statistics


def pixels_sha256(images: Tensor) -> str:
    """sha256 of the images' 8-bit levels, the input Inception actually sees."""
    return hashlib.sha256(to_uint8(images).numpy().tobytes()).hexdigest()


def reference_statistics(
    key: ReferenceKey, cache_dir: Path, compute_features: Callable[[], np.ndarray]
) -> ReferenceStatistics:
    """The cached entry for ``key``, computing it with ``compute_features()`` on a miss."""
    entry = Path(cache_dir) / key.digest()
    if entry.is_dir():
        log.info("reference statistics: cache hit %s", entry)
        return _load(entry)
    with build_lock(entry):
        if entry.is_dir():  # another job finished it while we waited for the lock
            log.info("reference statistics: cache hit %s", entry)
            return _load(entry)
        log.info("reference statistics: cache miss, computing features of %d real images into %s", key.num_images, entry)
        features = np.asarray(compute_features(), dtype=np.float32)
        reference = ReferenceStatistics(features, feature_statistics(features))
        with atomic_directory(entry) as tmp:
            _save(reference, key, tmp)
    return reference


def _save(reference: ReferenceStatistics, key: ReferenceKey, directory: Path) -> None:
    np.save(directory / "features.npy", reference.features)
    np.save(directory / "mu.npy", reference.statistics[0])
    np.save(directory / "sigma.npy", reference.statistics[1])
    (directory / "key.json").write_text(json.dumps(dataclasses.asdict(key), indent=2) + "\n")


def _load(entry: Path) -> ReferenceStatistics:
    statistics = (np.load(entry / "mu.npy"), np.load(entry / "sigma.npy"))
    return ReferenceStatistics(np.load(entry / "features.npy"), statistics)
