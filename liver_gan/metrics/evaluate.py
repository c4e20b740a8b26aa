"""FID and KID of a generator against its dataset's real images, or of two image folders.

Both metrics come from the same pool3 features.  The reals are a fixed choice of up to
``eval.fid.max_real`` images of the configured pool; their features are cached (see
:mod:`liver_gan.metrics.reference`).  A conditional model generates its classes in the real
pool's proportions, so the overall score compares like with like; per-class scores compare each
class's fakes with that class's reals.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from liver_gan.config import EvalConfig, KIDConfig, RealPool
from liver_gan.data.dataset import PreparedDataset
from liver_gan.data.labels import CLASS_NAMES
from liver_gan.errors import LiverGanError
from liver_gan.images import read_image_folder, write_png_folder
from liver_gan.metrics.fid import frechet_distance
from liver_gan.metrics.fidelity import fidelity_report
from liver_gan.metrics.inception import FeatureExtractor, load_feature_extractor
from liver_gan.metrics.kid import kernel_inception_distance
from liver_gan.metrics.reference import ReferenceKey, ReferenceStatistics, pixels_sha256, reference_statistics
from liver_gan.sampling import generate

log = logging.getLogger(__name__)

# Below this many images FID is biased upwards (Chong & Forsyth, 2020); 2048 is the customary floor.
UNBIASED_FID_COUNT = 2048
# Fixed, not the run's seed: every run on the same data meets the same reals and shares the cache.
REAL_SELECTION_SEED = 0


def evaluate_generator(
    generator: nn.Module,
    dataset: PreparedDataset,
    cfg: EvalConfig,
    run_dir: Path,
    device: torch.device | str,
    seed: int,
) -> dict[str, Any]:
    """The metrics.json fields: fid, kid_mean, kid_std, num_real, num_fake, real_pool,
    feature_extractor and, for a conditional generator, per_class."""
    check_eval_options(cfg)
    extractor = load_feature_extractor(cfg.fid.weights, device)  # first: no weights, no wasted sampling
    real_pool = RealPool(cfg.fid.real_pool)
    real_images, real_labels = select_real_images(dataset, real_pool, cfg.fid.max_real)
    _warn_if_small(len(real_images))
    reference = _real_reference(dataset, real_pool, real_images, extractor, cfg)
    conditional = generator.num_classes > 0
    fake_labels = matching_labels(cfg.fid.num_samples, real_labels, generator.num_classes) if conditional else None
    fake_images = generate(generator, cfg.fid.num_samples, device, labels=fake_labels, seed=seed)
    fake_features = extractor.features(fake_images, cfg.fid.batch_size)
    if cfg.fid.save_images:
        save_fid_images(Path(run_dir), real_images, fake_images)
    metrics = {
        **compare_features(reference.features, fake_features, cfg.kid, seed),
        "real_pool": real_pool.value,
        "feature_extractor": feature_extractor_info(extractor),
    }
    if conditional:
        metrics["per_class"] = {
            name: _class_metrics(reference.features, real_labels, fake_features, fake_labels, label, cfg.kid, seed)
            for label, name in enumerate(CLASS_NAMES[: generator.num_classes])
        }
    metrics |= fidelity_metrics(dataset, cfg, extractor, real_pool, reference, fake_images, fake_features, run_dir, device, seed)
    return metrics


def fidelity_metrics(
    dataset: PreparedDataset,
    cfg: EvalConfig,
    extractor: FeatureExtractor,
    real_pool: RealPool,
    reference: ReferenceStatistics,
    fake_images: Tensor,
    fake_features: np.ndarray,
    run_dir: Path,
    device: torch.device | str,
    seed: int,
) -> dict[str, Any]:
    """Precision/recall, diversity and the memorisation check (see liver_gan/metrics/fidelity.py).

    The memorisation check compares with up to ``eval.fid.max_real`` real training and validation
    slices, whose features are cached like the FID reference; the pixel search uses every training slice.
    """
    train_reference = reference
    if real_pool is not RealPool.train:
        train_images, _ = select_real_images(dataset, RealPool.train, cfg.fid.max_real)
        train_reference = _real_reference(dataset, RealPool.train, train_images, extractor, cfg)
    if len(dataset.val) >= 2:
        val_images, _ = select_real_images(dataset, RealPool.val, cfg.fid.max_real)
        val_features = _real_reference(dataset, RealPool.val, val_images, extractor, cfg).features
    else:
        log.warning("fewer than 2 validation slices: the memorisation check has no real-val baseline")
        val_images, val_features = dataset.val.images[:0], fake_features[:0]
    return fidelity_report(
        fake_images=fake_images,
        fake_features=fake_features,
        real_features=reference.features,
        train_images=dataset.train.images,
        train_features=train_reference.features,
        val_images=val_images,
        val_features=val_features,
        run_dir=Path(run_dir),
        seed=seed,
        device=device,
    )


def evaluate_folders(real_dir: Path, fake_dir: Path, cfg: EvalConfig, device: torch.device | str, seed: int) -> dict:
    """FID and KID of two folders of images, read as pytorch-fid's CLI reads them."""
    extractor = load_feature_extractor(cfg.fid.weights, device)
    real_features = extractor.pixel_features(read_image_folder(real_dir), cfg.fid.batch_size)
    fake_features = extractor.pixel_features(read_image_folder(fake_dir), cfg.fid.batch_size)
    _warn_if_small(len(real_features))
    return {
        **compare_features(real_features, fake_features, cfg.kid, seed),
        "real": str(real_dir),
        "fake": str(fake_dir),
        "feature_extractor": feature_extractor_info(extractor),
    }


def check_eval_options(cfg: EvalConfig) -> None:
    """Refuse eval.* counts that cannot work, before any sampling (and, in liver-gan-train, before training)."""
    for option, value, least in (
        ("fid.num_samples", cfg.fid.num_samples, 2),
        ("fid.max_real", cfg.fid.max_real, 2),
        ("kid.num_subsets", cfg.kid.num_subsets, 1),
    ):
        if value < least:
            raise LiverGanError(f"eval.{option}={value} must be at least {least}")


def select_real_images(dataset: PreparedDataset, real_pool: RealPool, max_real: int) -> tuple[Tensor, Tensor]:
    """Images and labels of the pool, or a fixed random choice of ``max_real`` of them (in pool order)."""
    pools = {RealPool.train: [dataset.train], RealPool.val: [dataset.val], RealPool.both: [dataset.train, dataset.val]}
    slices = pools[real_pool]
    images = torch.cat([part.images for part in slices])
    labels = torch.cat([part.labels for part in slices])
    if len(images) < 2:
        raise LiverGanError(
            f"eval.fid.real_pool={real_pool.value} holds {len(images)} images; FID needs at least 2: "
            "use real_pool=train or both, or a larger dataset.val_fraction"
        )
    if len(images) > max_real:
        chosen = torch.randperm(len(images), generator=torch.Generator().manual_seed(REAL_SELECTION_SEED))
        chosen = chosen[:max_real].sort().values
        images, labels = images[chosen], labels[chosen]
    return images, labels


def matching_labels(num_images: int, real_labels: Tensor, num_classes: int) -> Tensor:
    """Class labels in blocks whose sizes follow the reals' class proportions (largest remainder)."""
    shares = torch.bincount(real_labels, minlength=num_classes)[:num_classes].double()
    exact = shares / shares.sum() * num_images
    counts = exact.floor().long()
    largest_remainders = torch.argsort(exact - counts, descending=True, stable=True)
    counts[largest_remainders[: num_images - int(counts.sum())]] += 1
    return torch.arange(num_classes).repeat_interleave(counts)


def compare_features(real: np.ndarray, fake: np.ndarray, kid: KIDConfig, seed: int) -> dict[str, Any]:
    """fid, kid_mean, kid_std, num_real, num_fake of two feature sets."""
    fid = frechet_distance(real, fake)
    kid_mean, kid_std = kernel_inception_distance(real, fake, kid.num_subsets, kid.subset_size, seed)
    return {"fid": fid, "kid_mean": kid_mean, "kid_std": kid_std, "num_real": len(real), "num_fake": len(fake)}


def feature_extractor_info(extractor: FeatureExtractor) -> dict[str, str]:
    return {"weights": extractor.weights_name, "sha256": extractor.weights_sha256}


def save_fid_images(run_dir: Path, real_images: Tensor, fake_images: Tensor) -> None:
    """The exact images measured, as ``fid_images/real`` and ``fid_images/fake`` PNG folders."""
    write_png_folder(real_images, run_dir / "fid_images" / "real")
    write_png_folder(fake_images, run_dir / "fid_images" / "fake")


def _real_reference(
    dataset: PreparedDataset, real_pool: RealPool, real_images: Tensor, extractor: FeatureExtractor, cfg: EvalConfig
) -> ReferenceStatistics:
    """The reals' features and statistics, from the cache or from one Inception pass."""
    key = ReferenceKey(
        dataset_key=dataset.key,
        subset=dataset.subset.value,
        real_pool=real_pool.value,
        num_images=len(real_images),
        resolution=dataset.resolution,
        weights_sha256=extractor.weights_sha256,
        pixels_sha256=pixels_sha256(real_images),
    )
    return reference_statistics(key, Path(cfg.cache_dir), lambda: extractor.features(real_images, cfg.fid.batch_size))


def _class_metrics(
    real: np.ndarray,
    real_labels: Tensor,
    fake: np.ndarray,
    fake_labels: Tensor,
    label: int,
    kid: KIDConfig,
    seed: int,
) -> dict[str, Any]:
    """One class's scores from the overall features; null scores when a side has under 2 images."""
    class_real = real[(real_labels == label).numpy()]
    class_fake = fake[(fake_labels == label).numpy()]
    if min(len(class_real), len(class_fake)) < 2:
        log.warning(
            "%s: %d real and %d generated images; per-class FID/KID need at least 2 of each",
            CLASS_NAMES[label], len(class_real), len(class_fake),
        )
        unmeasured = {"fid": None, "kid_mean": None, "kid_std": None}
        return {**unmeasured, "num_real": len(class_real), "num_fake": len(class_fake)}
    return compare_features(class_real, class_fake, kid, seed)


def _warn_if_small(num_real: int) -> None:
    if num_real < UNBIASED_FID_COUNT:
        log.warning(
            "FID is biased at small N: %d real images (< %d); compare FIDs only at equal counts and prefer KID",
            num_real, UNBIASED_FID_COUNT,
        )
