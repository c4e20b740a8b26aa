"""The evaluation of a generator against its dataset's real images, or of two image folders.

Builds one :class:`~liver_gan.metrics.context.EvaluationContext` and runs the metrics that
``eval.metrics`` selects from liver_gan/metrics/registry.py.  The reals are a fixed choice of up
to ``eval.max_real`` images of ``eval.real_pool``; their features are cached (see
:mod:`liver_gan.metrics.reference`).  A conditional model generates its classes in the real
pool's proportions, so the overall scores compare like with like.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from liver_gan.data.dataset import PreparedDataset
from liver_gan.data.labels import SUBSET_CLASSES
from liver_gan.data.masks import ct, has_masks
from liver_gan.data.schema import DatasetConfig, Subset
from liver_gan.errors import LiverGanError
from liver_gan.images import read_image_folder
from liver_gan.metrics.context import EvaluationContext, RealImages, check_pool_size, dataset_reals
from liver_gan.metrics.inception import FeatureExtractor, load_feature_extractor
from liver_gan.metrics.masks import MaskInputs
from liver_gan.metrics.registry import Metric, compute_metrics, selected_metrics
from liver_gan.metrics.schema import EvalConfig, RealPool
from liver_gan.models.ddpm import sampling_settings
from liver_gan.sampling import generate
from liver_gan.distributed import SINGLE_PROCESS, World, gather_to_main, rank_seed, shard_range

log = logging.getLogger(__name__)

AUTO_SAMPLES_PER_REAL = 2
AUTO_MAX_SAMPLES = 2048


def evaluate_generator(
    generator: nn.Module,
    dataset: PreparedDataset,
    cfg: EvalConfig,
    run_dir: Path,
    device: torch.device | str,
    seed: int,
    world: World = SINGLE_PROCESS,
    budget_minutes: float | None = None,
) -> dict[str, Any] | None:
    """The metrics.json fields: ``metrics`` (the names computed), num_real, num_fake, real_pool,
    feature_extractor and each selected metric's keys, with ``per_class`` rows for a conditional generator,
    and a diffusion model's ``sample_steps`` and ``guidance_scale``.

    In a run of several ranks every rank calls this: each generates and embeds its share of the
    samples, and rank 0 gathers them and computes the metrics; the other ranks get None.

    Slices with mask channels (``dataset.masks=true``) are compared by their CT channel only; the
    metrics that check masks are left out for slices without them.  ``budget_minutes``, the run's
    ``trainer.max_minutes``, sizes the mask check's U-Net on a CPU (liver_gan/metrics/masks.py).
    """
    check_eval_options(cfg)
    with_masks = has_masks(dataset.train.images)
    metrics = [metric for metric in selected_metrics(cfg.metrics) if with_masks or not metric.needs_masks]
    extractor = load_feature_extractor(cfg.inception_weights, device)  # first: no weights, no wasted sampling
    masked_dataset, dataset = dataset, dataset.ct_only()
    real_pool = RealPool(cfg.real_pool)
    real = dataset_reals(dataset, real_pool, cfg, extractor)
    num_classes = generator.num_classes
    num_samples = generated_count(cfg.num_samples, len(real))
    fake_labels = matching_labels(num_samples, real.labels, num_classes) if num_classes > 0 else None
    fake = generated_features(generator, num_samples, device, fake_labels, seed, extractor, cfg.batch_size, world)
    if fake is None:
        return None  # a rank other than 0: its share is with rank 0, which computes the metrics
    generated, fake_features = fake
    fake_images = ct(generated)
    masks = None
    if with_masks:
        classes = sample_classes(fake_labels, dataset.subset, num_samples)
        masks = MaskInputs(generated, classes, masked_dataset.train, masked_dataset.val)
    context = EvaluationContext(
        options=cfg,
        extractor=extractor,
        fake_features=fake_features,
        device=torch.device(device),
        seed=seed,
        run_dir=Path(run_dir),
        fake_images=fake_images,
        fake_labels=fake_labels,
        num_classes=num_classes,
        dataset=dataset,
        reals={real_pool: real},
        masks=masks,
        budget_minutes=budget_minutes,
    )
    return {**report(metrics, context, real_pool=real_pool.value), **sampling_settings(generator)}


def generated_features(
    generator: nn.Module,
    num_samples: int,
    device: torch.device | str,
    labels: Tensor | None,
    seed: int,
    extractor: FeatureExtractor,
    batch_size: int,
    world: World,
) -> tuple[Tensor, np.ndarray] | None:
    """``num_samples`` generated images (mask channels included) and the Inception features of their
    CT channel, each rank generating its share (rank r > 0 from a seed of its own); all of them on
    rank 0, None on the other ranks."""
    share = shard_range(num_samples, world)
    images = generate(
        generator,
        len(share),
        device,
        labels=None if labels is None else labels[share.start : share.stop],
        seed=seed if world.is_main else rank_seed(seed, world.rank),
    )
    gathered = gather_to_main((images, extractor.features(ct(images), batch_size, "generated slices")), world)
    if gathered is None:
        return None
    return torch.cat([part[0] for part in gathered]), np.concatenate([part[1] for part in gathered])


def sample_classes(fake_labels: Tensor | None, subset: Subset, num_samples: int) -> Tensor | None:
    """The class of each generated slice: its conditioning label, or the one class an unconditional
    model was trained on (None when it learnt both, ``dataset.subset=all``)."""
    if fake_labels is not None:
        return fake_labels
    classes = SUBSET_CLASSES[subset]
    return torch.full((num_samples,), classes[0]) if len(classes) == 1 else None


def generated_count(num_samples: int | None, num_real: int) -> int:
    """``eval.num_samples``, or when null twice the real images compared, at most 2048.

    FID's small-sample bias shrinks with both counts; twice the reals gets most of what more fakes
    could give, and a small real pool does not buy 2048 fakes' worth of Inception time.
    """
    return num_samples if num_samples is not None else min(AUTO_MAX_SAMPLES, AUTO_SAMPLES_PER_REAL * num_real)


def evaluate_folders(real_dir: Path, fake_dir: Path, cfg: EvalConfig, device: torch.device | str, seed: int) -> dict:
    """The selected metrics that compare two sets of images (FID, KID, precision/recall) of two
    folders, read as pytorch-fid's CLI reads them."""
    check_eval_options(cfg)
    metrics = folder_metrics(cfg.metrics)
    extractor = load_feature_extractor(cfg.inception_weights, device)
    real_pixels, fake_pixels = read_image_folder(real_dir), read_image_folder(fake_dir)
    real = RealImages(
        len(real_pixels), functools.partial(extractor.pixel_features, real_pixels, cfg.batch_size, f"images of {real_dir}")
    )
    context = EvaluationContext(
        options=cfg,
        extractor=extractor,
        fake_features=extractor.pixel_features(fake_pixels, cfg.batch_size, f"images of {fake_dir}"),
        device=torch.device(device),
        seed=seed,
        reals={RealPool(cfg.real_pool): real},
    )
    return report(metrics, context, real=str(real_dir), fake=str(fake_dir))


def report(metrics: list[Metric], context: EvaluationContext, **compared: str) -> dict[str, Any]:
    """The metrics computed, what was ``compared``, the image counts and Inception weights, and
    each metric's keys: the fields of metrics.json and eval.json."""
    return {
        "metrics": [metric.name for metric in metrics],
        **compared,
        "num_real": len(context.real()),
        "num_fake": len(context.fake_features),
        "feature_extractor": feature_extractor_info(context.extractor),
        **compute_metrics(metrics, context),
    }


def folder_metrics(names: list[str]) -> list[Metric]:
    """The selected metrics that two image folders allow; the others are left out with a warning."""
    selected = [metric for metric in selected_metrics(names) if not metric.needs_masks]  # image files carry no masks
    left_out = [metric.name for metric in selected if metric.needs_dataset]
    if len(left_out) == len(selected):
        raise LiverGanError(
            f"eval.metrics=[{', '.join(names)}] need a generator and its training set: give checkpoint=RUN_DIR_OR_PT"
        )
    if left_out:
        log.warning("two image folders: %s left out (they need checkpoint=RUN_DIR_OR_PT)", ", ".join(left_out))
    return [metric for metric in selected if not metric.needs_dataset]


def check_eval_options(cfg: EvalConfig, dataset: DatasetConfig | None = None) -> None:
    """Refuse eval.* settings that cannot work, before the dataset build (and so before any training).

    ``dataset``, the run's dataset options, lets ``eval.real_pool`` be checked against the split.
    """
    selected_metrics(cfg.metrics)
    for option, value, least in (
        ("num_samples", cfg.num_samples, 2),  # null: sized to the reals, at least 2 of them
        ("max_real", cfg.max_real, 2),
        ("batch_size", cfg.batch_size, 1),
        ("kid.num_subsets", cfg.kid.num_subsets, 1),
        ("kid.subset_size", cfg.kid.subset_size, 2),
    ):
        if value is not None and value < least:
            raise LiverGanError(f"eval.{option}={value} must be at least {least}")
    if dataset is not None and RealPool(cfg.real_pool) is RealPool.val and dataset.val_fraction == 0:
        raise LiverGanError(
            "eval.real_pool=val but dataset.val_fraction=0 leaves no validation slices: "
            "use eval.real_pool=train or both, or a dataset.val_fraction above 0"
        )


def check_eval_data(dataset: PreparedDataset, cfg: EvalConfig) -> None:
    """Right after the dataset build, before training: the real pool holds at least 2 images."""
    check_pool_size(dataset, RealPool(cfg.real_pool))


def matching_labels(num_images: int, real_labels: Tensor, num_classes: int) -> Tensor:
    """Class labels in blocks whose sizes follow the reals' class proportions (largest remainder)."""
    shares = torch.bincount(real_labels, minlength=num_classes)[:num_classes].double()
    exact = shares / shares.sum() * num_images
    counts = exact.floor().long()
    largest_remainders = torch.argsort(exact - counts, descending=True, stable=True)
    counts[largest_remainders[: num_images - int(counts.sum())]] += 1
    return torch.arange(num_classes).repeat_interleave(counts)


def feature_extractor_info(extractor: FeatureExtractor) -> dict[str, str]:
    return {"weights": extractor.weights_name, "sha256": extractor.weights_sha256}
