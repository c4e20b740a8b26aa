"""The metrics an evaluation can compute, selected by name with ``eval.metrics``.

As in stylegan2-ada-pytorch's ``metrics/metric_main.py``: each metric is a function of one
:class:`~liver_gan.metrics.context.EvaluationContext` that returns its metrics.json keys, registered
under its name with :func:`register_metric`.  The formulas live in their own modules (fid.py,
kid.py, precision_recall.py, diversity.py, memorisation.py); the functions here only pick their
inputs from the context.  A conditional generator's FID and KID are also reported per class
(``per_class``), from the same features, and both beside their real-vs-real floor
(liver_gan/metrics/floor.py).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from liver_gan.data.labels import CLASS_NAMES
from liver_gan.errors import LiverGanError
from liver_gan.images import write_png_folder
from liver_gan.metrics.context import EvaluationContext, pool_size
from liver_gan.metrics.diversity import mean_pairwise_cosine_distance, mean_pairwise_ms_ssim
from liver_gan.metrics.fid import frechet_distance
from liver_gan.metrics.floor import FLOOR_KEYS, floor_sets, floor_value, ratio_to_floor
from liver_gan.metrics.kid import kernel_inception_distance
from liver_gan.metrics.masks import MASK_KEYS, mask_report
from liver_gan.metrics.memorisation import (
    CLOSEST_PAIRS_FILE,
    memorisation_report,
    nearest_training_slices,
    report_keys,
    save_closest_pairs,
)
from liver_gan.metrics.precision_recall import density_coverage, precision_recall
from liver_gan.metrics.schema import RealPool
from liver_gan.progress import PhaseProgress, format_duration

log = logging.getLogger(__name__)

# Below this many images FID is biased upwards (Chong & Forsyth, 2020); 2048 is the customary floor.
UNBIASED_FID_COUNT = 2048
PRECISION_RECALL_K = 3  # Kynkäänniemi et al.'s default
DENSITY_COVERAGE_K = 5  # Naeem et al.'s default
DIVERSITY_PAIRS = 1000  # random pairs for the mean MS-SSIM

Results = dict[str, Any]


@dataclass(frozen=True)
class Metric:
    name: str
    compute: Callable[[EvaluationContext], Results]
    keys: tuple[str, ...]  # the flat metrics.json keys it returns (besides per_class rows)
    # Needs the generated images and the training set, which two folders of image files lack.
    needs_dataset: bool
    # Checks label maps: computed only where the slices carry masks (dataset.masks=true).
    needs_masks: bool = False
    # Embeds the reals of both splits, whatever eval.real_pool: the FID floor may then use the other
    # split at no Inception cost (liver_gan/metrics/floor.py).
    reads_both_splits: bool = False


_METRICS: dict[str, Metric] = {}


def register_metric(
    name: str,
    keys: Sequence[str],
    needs_dataset: bool = False,
    needs_masks: bool = False,
    reads_both_splits: bool = False,
) -> Callable[[Callable[[EvaluationContext], Results]], Callable[[EvaluationContext], Results]]:
    """Decorator: make ``compute(context) -> {key: value}`` selectable as ``eval.metrics=[name]``."""

    def register(compute: Callable[[EvaluationContext], Results]) -> Callable[[EvaluationContext], Results]:
        _METRICS[name] = Metric(name, compute, tuple(keys), needs_dataset, needs_masks, reads_both_splits)
        return compute

    return register


def known_metrics() -> list[str]:
    return list(_METRICS)


def selected_metrics(names: Sequence[str]) -> list[Metric]:
    """The registered metrics named by ``eval.metrics``, in its order; a one-line error otherwise."""
    known = ", ".join(_METRICS)
    unknown = [name for name in names if name not in _METRICS]
    if unknown:
        raise LiverGanError(f"eval.metrics: unknown metric {', '.join(unknown)}; known metrics: {known}")
    if not names:
        raise LiverGanError(f"eval.metrics is empty: name some of {known}, or set eval.enabled=false")
    if len(set(names)) < len(names):
        raise LiverGanError(f"eval.metrics=[{', '.join(names)}] names a metric twice")
    return [_METRICS[name] for name in names]


def check_optimized_metric(optimized_metric: str, metric_names: Sequence[str]) -> None:
    """Refuse a sweep objective that the selected metrics never return (every job would score inf)."""
    keys = [key for metric in selected_metrics(metric_names) for key in metric.keys]
    if optimized_metric not in keys:
        raise LiverGanError(
            f"optimized_metric={optimized_metric} is not a result of eval.metrics=[{', '.join(metric_names)}]; "
            f"choose one of {', '.join(keys)}"
        )


def compute_metrics(metrics: Sequence[Metric], context: EvaluationContext) -> Results:
    """Every metric's keys; their per-class rows merged into one ``per_class``."""
    results: Results = {}
    # No ETA from the pace of the first metric: it pays for the Inception passes the others reuse.
    # Each metric's own Inception passes show theirs, and its time is logged when it ends.
    with PhaseProgress("metrics", len(metrics), "metrics", eta=False) as shown:
        for number, metric in enumerate(metrics, start=1):
            log.info("computing %s (%d/%d)", metric.name, number, len(metrics))
            start = time.perf_counter()
            result = metric.compute(context)
            log.info("%s: done in %s", metric.name, format_duration(time.perf_counter() - start))
            per_class = result.pop("per_class", {})
            results |= result
            for name, row in per_class.items():
                results.setdefault("per_class", {}).setdefault(name, {}).update(row)
            shown.update()
    return results


def per_class_rows(
    context: EvaluationContext, metric: str, score: Callable[[np.ndarray, np.ndarray], Results], unmeasured: Results
) -> Results:
    """``{"per_class": {name: score of its reals and fakes, num_real, num_fake}}`` of a conditional
    generator, from the overall features; ``unmeasured`` where a side has under 2 images. {} otherwise."""
    if context.fake_labels is None:
        return {}
    real = context.real()
    rows = {}
    for label, name in enumerate(CLASS_NAMES[: context.num_classes]):
        class_real = real.features[(real.labels == label).numpy()]
        class_fake = context.fake_features[(context.fake_labels == label).numpy()]
        counts = {"num_real": len(class_real), "num_fake": len(class_fake)}
        if min(len(class_real), len(class_fake)) < 2:
            log.warning(
                "%s: %d real and %d generated images; per-class %s needs at least 2 of each",
                name, len(class_real), len(class_fake), metric,
            )
            rows[name] = {**unmeasured, **counts}
        else:
            rows[name] = {**score(class_real, class_fake), **counts}
    return {"per_class": rows}


@register_metric("fid", keys=("fid", "fid_floor", "fid_over_floor", *FLOOR_KEYS))
def fid_scores(context: EvaluationContext) -> Results:
    """pytorch-fid's FID beside its real-vs-real floor; ``eval.fid.save_images`` also writes the
    images measured as PNG folders."""
    real = context.real()
    if len(real) < UNBIASED_FID_COUNT:
        # A warning only where eval.max_real left reals out: all of a small pool is what the data allows.
        left_out = context.dataset is not None and len(real) < pool_size(context.dataset, RealPool(context.options.real_pool))
        log.log(
            logging.WARNING if left_out else logging.INFO,
            "FID is biased at small N: %d real images (< %d); compare FIDs only at equal counts and prefer KID",
            len(real), UNBIASED_FID_COUNT,
        )
    if context.options.fid.save_images and context.fake_images is not None:
        write_png_folder(real.images, context.run_dir / "fid_images" / "real")
        write_png_folder(context.fake_images, context.run_dir / "fid_images" / "fake")

    def score(real_features: np.ndarray, fake_features: np.ndarray) -> Results:
        return {"fid": frechet_distance(real_features, fake_features)}

    fid = frechet_distance(real.features, context.fake_features)
    return {"fid": fid, **fid_floor(context, fid), **per_class_rows(context, "FID", score, {"fid": None})}


def other_split_embedded(context: EvaluationContext) -> bool:
    """Whether this evaluation embeds the split the comparison reals do not come from anyway."""
    return any(metric.reads_both_splits for metric in selected_metrics(context.options.metrics))


def fid_floor(context: EvaluationContext, fid: float) -> Results:
    """The FID of two disjoint sets of reals, and ``fid`` in units of it."""
    floor = floor_sets(context, other_split_embedded(context))
    if floor is None:
        return dict.fromkeys(("fid_floor", "fid_over_floor", *FLOOR_KEYS))
    value = floor_value("fid", floor, lambda sets: frechet_distance(sets.stand_in, sets.reference))
    counts = len(floor.stand_in), len(floor.reference)
    log.info("real-vs-real floor (%s, %d and %d slices): FID %.4g", floor.pools, *counts, value)
    return {"fid_floor": value, "fid_over_floor": ratio_to_floor(fid, value), **floor.description()}


@register_metric("kid", keys=("kid_mean", "kid_std", "kid_floor", "kid_floor_std", *FLOOR_KEYS))
def kid_scores(context: EvaluationContext) -> Results:
    """KID's mean and std over ``eval.kid.num_subsets`` subsets of ``eval.kid.subset_size``, beside
    the same of two disjoint sets of reals."""
    kid = context.options.kid

    def score(real_features: np.ndarray, fake_features: np.ndarray) -> Results:
        mean, std = kernel_inception_distance(
            real_features, fake_features, kid.num_subsets, kid.subset_size, context.seed
        )
        return {"kid_mean": mean, "kid_std": std}

    floor = floor_sets(context, other_split_embedded(context))
    if floor is None:
        floor_scores = dict.fromkeys(("kid_floor", "kid_floor_std", *FLOOR_KEYS))
    else:
        settings = f"kid {kid.num_subsets} {kid.subset_size} {context.seed}"  # what the subsets depend on
        floor_kid = floor_value(settings, floor, lambda sets: score(sets.reference, sets.stand_in))
        floor_scores = {"kid_floor": floor_kid["kid_mean"], "kid_floor_std": floor_kid["kid_std"]}
        floor_scores |= floor.description()
    per_class = per_class_rows(context, "KID", score, {"kid_mean": None, "kid_std": None})
    return {**score(context.real().features, context.fake_features), **floor_scores, **per_class}


@register_metric("precision_recall", keys=("precision", "recall"))
def precision_recall_scores(context: EvaluationContext) -> Results:
    """Kynkäänniemi et al.'s precision and recall; None with k or fewer images on a side."""
    return _nearest_neighbour_scores(context, "precision/recall", ("precision", "recall"), precision_recall, PRECISION_RECALL_K)


@register_metric("density_coverage", keys=("density", "coverage"))
def density_coverage_scores(context: EvaluationContext) -> Results:
    """Naeem et al.'s density and coverage; None with k or fewer images on a side."""
    return _nearest_neighbour_scores(context, "density/coverage", ("density", "coverage"), density_coverage, DENSITY_COVERAGE_K)


def _nearest_neighbour_scores(
    context: EvaluationContext, name: str, keys: tuple[str, str], scores: Callable[..., tuple[float, float]], k: int
) -> Results:
    """Two k-nearest-neighbour scores of the real and generated features, left out (None, with a
    warning) when a side holds k or fewer images: the k-NN balls would be undefined."""
    real, fake = context.real().features, context.fake_features
    if min(len(real), len(fake)) <= k:
        log.warning("%s with k=%d needs more than %d real and generated images; left out", name, k, k)
        return dict.fromkeys(keys)
    return dict(zip(keys, scores(real, fake, k=k)))


@register_metric(
    "diversity",
    keys=("diversity_ms_ssim", "diversity_ms_ssim_real", "diversity_feature_cosine", "diversity_feature_cosine_real"),
    needs_dataset=True,
)
def diversity_scores(context: EvaluationContext) -> Results:
    """Mean pairwise MS-SSIM and feature cosine distance of the fakes, each beside the reals' own."""
    return {
        "diversity_ms_ssim": mean_pairwise_ms_ssim(context.fake_images, DIVERSITY_PAIRS, context.seed),
        "diversity_ms_ssim_real": mean_pairwise_ms_ssim(context.dataset.train.images, DIVERSITY_PAIRS, context.seed),
        "diversity_feature_cosine": mean_pairwise_cosine_distance(context.fake_features),
        "diversity_feature_cosine_real": mean_pairwise_cosine_distance(context.real().features),
    }


@register_metric(
    "memorisation", keys=(*report_keys(), "memorisation_closest_pairs"), needs_dataset=True, reads_both_splits=True
)
def memorisation_scores(context: EvaluationContext) -> Results:
    """Nearest-training-slice distances of the fakes against the validation slices' baseline.

    The pixel search covers every training slice; the feature search, up to ``eval.max_real``
    training and validation slices, whose features are cached like the FID reference's.
    """
    dataset, fakes = context.dataset, context.fake_images
    if len(dataset.val) >= 2:
        val = context.real(RealPool.val)
        val_images, val_features = val.images, val.features
    else:
        log.warning("fewer than 2 validation slices: the memorisation check has no real-val baseline")
        val_images, val_features = dataset.val.images[:0], context.fake_features[:0]
    # The fakes' nearest training slices serve both the closest-pairs grid and the report.
    fake_nearest = nearest_training_slices(fakes, dataset.train.images, context.device)
    grid_path = context.run_dir / CLOSEST_PAIRS_FILE
    grid = save_closest_pairs(fakes, dataset.train.images, grid_path, device=context.device, fake_nearest=fake_nearest)
    report = memorisation_report(
        fakes,
        dataset.train.images,
        val_images,
        context.fake_features,
        context.real(RealPool.train).features,
        val_features,
        context.device,
        fake_nearest,
    )
    return {**report, "memorisation_closest_pairs": grid.name}


@register_metric("masks", keys=MASK_KEYS, needs_dataset=True, needs_masks=True)
def mask_scores(context: EvaluationContext) -> Results:
    """The mask checks of jointly generated slices (liver_gan/metrics/masks.py)."""
    return mask_report(context.masks, context.options.segmenter, context.device, context.seed, context.budget_minutes)
