"""The evaluation context: everything a metric may read, built once per evaluation.

The generated images and their Inception features are computed up front: every metric needs them.
Real images are chosen per pool (up to ``eval.max_real`` of ``train``, ``val`` or ``both``) and
their features computed, or read from the reference-statistics cache, on first use: a selection
such as ``eval.metrics=[fid]`` costs no Inception pass over the validation slices that only the
memorisation check compares with.  A new set of reals embeds only the slices no earlier set held
(liver_gan/metrics/slice_features.py).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from omegaconf import DictConfig
from torch import Tensor

from liver_gan.data.dataset import PreparedDataset, SliceSet
from liver_gan.errors import LiverGanError
from liver_gan.metrics.inception import FeatureExtractor
from liver_gan.metrics.masks import MaskInputs
from liver_gan.metrics.reference import ReferenceKey, pixels_sha256, reference_statistics
from liver_gan.metrics.schema import RealPool
from liver_gan.metrics.slice_features import cached_slice_features

# Fixed, not the run's seed: every run on the same data meets the same reals and shares the cache.
REAL_SELECTION_SEED = 0


class RealImages:
    """A fixed choice of real images (with their class labels) and their features, computed on first use.

    ``images`` and ``labels`` are None for a folder of image files, which is only ever compared as features.
    """

    def __init__(
        self,
        count: int,
        compute_features: Callable[[], np.ndarray],
        images: Tensor | None = None,
        labels: Tensor | None = None,
    ) -> None:
        self.count = count
        self.images = images
        self.labels = labels
        self._compute_features = compute_features

    def __len__(self) -> int:
        return self.count

    @functools.cached_property
    def features(self) -> np.ndarray:
        """float32 (N, 2048) Inception features."""
        return self._compute_features()


@dataclass
class EvaluationContext:
    """What a metric function reads (see liver_gan/metrics/registry.py)."""

    options: DictConfig  # eval.*
    extractor: FeatureExtractor
    fake_features: np.ndarray
    device: torch.device
    seed: int  # noise of the generated images, KID subsets, diversity pairs
    run_dir: Path | None = None  # where metrics write files (the closest-pairs grid, fid_images/)
    fake_images: Tensor | None = None  # in [-1, 1]; None when two image folders are compared
    fake_labels: Tensor | None = None  # classes of a conditional generator's images, else None
    num_classes: int = 0
    dataset: PreparedDataset | None = None  # the run's training and validation slices; None for two folders
    reals: dict[RealPool, RealImages] = field(default_factory=dict)  # by pool: chosen on first use, or given
    # With dataset.masks=true, the generated and real slices with their mask channels (the fields
    # above hold the CT channel only); None otherwise.
    masks: MaskInputs | None = None
    budget_minutes: float | None = None  # the run's trainer.max_minutes: what CPU-sized checks scale to

    def real(self, pool: RealPool | None = None) -> RealImages:
        """The real images of ``pool`` (``eval.real_pool`` by default), the fakes' comparison set."""
        pool = RealPool(self.options.real_pool) if pool is None else pool
        if pool not in self.reals:
            if self.dataset is None:
                raise LiverGanError(f"real pool {pool.value} needs a run's dataset: give checkpoint=, not two folders")
            self.reals[pool] = dataset_reals(self.dataset, pool, self.options, self.extractor)
        return self.reals[pool]


def dataset_reals(
    dataset: PreparedDataset, pool: RealPool, options: DictConfig, extractor: FeatureExtractor
) -> RealImages:
    """Up to ``eval.max_real`` real images of ``pool``, their features cached under ``eval.cache_dir``."""
    images, labels = select_real_images(dataset, pool, options.max_real)
    key = ReferenceKey(
        dataset_key=dataset.key,
        subset=dataset.subset.value,
        real_pool=pool.value,
        num_images=len(images),
        resolution=dataset.resolution,
        weights_sha256=extractor.weights_sha256,
        pixels_sha256=pixels_sha256(images),
        device_type=extractor.device.type,
        precision=extractor.precision,
    )

    def compute_features() -> np.ndarray:
        what = f"real {pool.value} slices"
        compute = functools.partial(
            cached_slice_features, images, extractor, options.batch_size, options.cache_dir, what
        )
        return reference_statistics(key, Path(options.cache_dir), compute).features

    return RealImages(len(images), compute_features, images, labels)


def pool_slices(dataset: PreparedDataset, pool: RealPool) -> list[SliceSet]:
    pools = {RealPool.train: [dataset.train], RealPool.val: [dataset.val], RealPool.both: [dataset.train, dataset.val]}
    return pools[pool]


def pool_size(dataset: PreparedDataset, pool: RealPool) -> int:
    return sum(len(part) for part in pool_slices(dataset, pool))


def check_pool_size(dataset: PreparedDataset, pool: RealPool) -> None:
    """A pool of fewer than 2 images is refused, with what to change."""
    count = pool_size(dataset, pool)
    if count < 2:
        raise LiverGanError(
            f"eval.real_pool={pool.value} holds {count} images; the metrics need at least 2: "
            "use real_pool=train or both, or a larger dataset.val_fraction"
        )


def select_real_images(dataset: PreparedDataset, pool: RealPool, max_real: int) -> tuple[Tensor, Tensor]:
    """Images and labels of the pool, or a fixed random choice of ``max_real`` of them (in pool order).

    Only the chosen slices are copied: a 19k-slice training set is never concatenated whole.
    """
    check_pool_size(dataset, pool)
    parts = pool_slices(dataset, pool)
    total = sum(len(part) for part in parts)
    if len(parts) == 1 and total <= max_real:
        return parts[0].images, parts[0].labels
    chosen = torch.arange(total)
    if total > max_real:
        chosen = torch.randperm(total, generator=torch.Generator().manual_seed(REAL_SELECTION_SEED))
        chosen = chosen[:max_real].sort().values
    images, labels, offset = [], [], 0
    for part in parts:
        local = chosen[(chosen >= offset) & (chosen < offset + len(part))] - offset
        images.append(part.images[local])
        labels.append(part.labels[local])
        offset += len(part)
    return torch.cat(images), torch.cat(labels)
