"""Cached Inception features and FID statistics of the real images.

Every run on the same data, and every job of a sweep, compares against the same reals, so their
features are computed once and kept under ``eval.cache_dir``.  An entry is keyed by the prepared
dataset, subset, real pool, image count, resolution, the weights' sha256, the device type and
arithmetic Inception ran with (so that reals cached on a CPU never meet fakes measured on a GPU),
and by the sha256 of the 8-bit pixels themselves: the dataset key does not cover the train/val split, which
depends on the run's seed.  Per-class features are rows of the same entry (the real labels are a fixed
function of the dataset), so they need no entry of their own.  Entries are made by
:func:`liver_gan.atomic.build_once`, so concurrent jobs compute an entry once and never read a
half-written one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Callable

import numpy as np
from torch import Tensor

from liver_gan.atomic import build_once, mark_cache_entry
from liver_gan.errors import LiverGanError
from liver_gan.images import to_uint8
from liver_gan.metrics.fid import Statistics, feature_statistics

log = logging.getLogger(__name__)

KEY_FILE = "key.json"
ARRAYS = ("features", "mu", "sigma")  # float32 (N, 2048), then the FID statistics (float64)


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
    device_type: str  # cpu, cuda, ...: kernels differ in rounding between devices
    precision: str  # the arithmetic of the Inception pass (FeatureExtractor.precision)

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
    """The cached entry for ``key``, computing it with ``compute_features()`` on a miss.

    A damaged entry (a truncated or unreadable file) is computed again in its place.
    """
    entry = Path(cache_dir) / key.digest()
    if entry.exists() and not entry.is_dir():
        raise LiverGanError(
            f"{entry} is a file where the reference statistics' entry folder belongs; remove it, or set eval.cache_dir"
        )

    def compute(directory: Path) -> None:
        mark_cache_entry(directory)
        log.info(
            "reference statistics: cache miss, computing features of %d real images into %s", key.num_images, entry
        )
        features = np.asarray(compute_features(), dtype=np.float32)
        _save(ReferenceStatistics(features, feature_statistics(features)), key, directory)

    if not build_once(entry, compute, is_complete=is_entry):
        log.info("reference statistics: cache hit %s", entry)
    return _load(entry)


def is_entry(path: Path) -> bool:
    """Whether ``path`` holds a whole entry: every array's header matches its file's length
    and the shapes agree (checked without reading the data), and ``key.json`` parses."""
    try:
        features, mu, sigma = (np.load(path / f"{name}.npy", mmap_mode="r") for name in ARRAYS)
        key = json.loads((path / KEY_FILE).read_text())
    except (OSError, ValueError):
        return False
    dims = features.shape[1:]
    return mu.shape == dims and sigma.shape == dims * 2 and isinstance(key, dict)


def entry_options(path: Path) -> dict[str, Any]:
    """What the entry at ``path`` was computed from (the fields of its :class:`ReferenceKey`)."""
    return json.loads((Path(path) / KEY_FILE).read_text())


def _save(reference: ReferenceStatistics, key: ReferenceKey, directory: Path) -> None:
    for name, array in zip(ARRAYS, (reference.features, *reference.statistics)):
        np.save(directory / f"{name}.npy", array, allow_pickle=False)
    (directory / KEY_FILE).write_text(json.dumps(dataclasses.asdict(key), indent=2) + "\n")


def _load(entry: Path) -> ReferenceStatistics:
    try:
        features, mu, sigma = (np.load(entry / f"{name}.npy", allow_pickle=False) for name in ARRAYS)
    except (OSError, ValueError) as error:
        raise LiverGanError(
            f"reference statistics {entry} are damaged ({error}); delete that folder to compute them again"
        ) from error
    return ReferenceStatistics(features, (mu, sigma))
