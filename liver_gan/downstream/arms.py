"""The three arms of the downstream-utility experiment, each trained over several seeds, for the
task ``task=`` names (a healthy-vs-tumor classifier, or a liver and tumor segmenter):

- real only: the real training slices;
- real + synthetic: the real slices plus ``ratio`` times as many synthetic ones (0.5 = +50%);
- synthetic only ("train on synthetic, test on real"): as many synthetic slices as real ones.

Every arm is tested on the same real validation slices (other patients; split by patient).
A difference from the real-only arm is called significant only if it exceeds the seed spread:
``|mean_arm - mean_real| >= std_arm + std_real`` (sample standard deviations over the seeds). This
is a deliberately cautious reading of a handful of seeds, not a hypothesis test.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from liver_gan.config import SyntheticClasses, UtilityTask
from liver_gan.data.dataset import PreparedDataset, SliceSet
from liver_gan.data.labels import HEALTHY, TUMOR
from liver_gan.data.masks import ct, label_maps
from liver_gan.data.schema import Subset
from liver_gan.downstream.classification import METRICS, classification_metrics, train_classifier, tumor_probabilities
from liver_gan.downstream.segmentation import (
    SEGMENTATION_METRICS,
    STRUCTURES,
    dice_per_patient,
    predict_label_maps,
    train_segmenter,
)
from liver_gan.errors import LiverGanError
from liver_gan.progress import PhaseProgress
from liver_gan.runs import load_generator
from liver_gan.sampling import balanced_labels, generate

MIN_SEEDS = 3

# Synthetic slices of the requested classes, drawn reproducibly from a seed: (N, C, R, R), with
# mask channels when the generator makes them (dataset.masks=true).
SyntheticSource = Callable[[Tensor, int], Tensor]


@dataclass(frozen=True)
class Arm:
    name: str  # a key for utility.json and TensorBoard
    title: str  # for the terminal table
    uses_real: bool
    synthetic_ratio: float  # synthetic slices per real training slice


def utility_arms(ratios: Sequence[float]) -> list[Arm]:
    if not ratios or any(ratio <= 0 for ratio in ratios) or len(set(ratios)) != len(ratios):
        raise LiverGanError(f"ratios={list(ratios)} must be distinct positive fractions, e.g. [0.5, 1.0]")
    mixed = [
        Arm(f"real_plus_{ratio * 100:g}pct", f"real + {ratio * 100:g}% synthetic", True, ratio) for ratio in ratios
    ]
    return [Arm("real_only", "real only", True, 0.0), *mixed, Arm("synthetic_only", "synthetic only", False, 1.0)]


def conditional_source(generator: nn.Module, device: torch.device) -> SyntheticSource:
    """Slices of each requested class from one class-conditional generator."""
    if generator.num_classes != 2:
        raise LiverGanError("generator= must be a conditional model (model.conditional=true); else give tumor_generator and healthy_generator")
    return lambda labels, seed: generate(generator, len(labels), device, labels=labels, seed=seed)


def per_class_source(tumor_generator: nn.Module, healthy_generator: nn.Module, device: torch.device) -> SyntheticSource:
    """Tumor slices from one unconditional generator, healthy slices from another."""

    def sample(labels: Tensor, seed: int) -> Tensor:
        images = torch.empty(
            len(labels), tumor_generator.image_channels, tumor_generator.resolution, tumor_generator.resolution
        )
        for label, generator in ((TUMOR, tumor_generator), (HEALTHY, healthy_generator)):
            wanted = labels == label
            images[wanted] = generate(generator, int(wanted.sum()), device, seed=seed * 2 + label)
        return images

    return sample


def load_synthetic_source(cfg: DictConfig, device: torch.device) -> tuple[SyntheticSource, DictConfig, dict[str, str]]:
    """The synthetic slices' source, the GAN's training config, and the generators used."""
    if cfg.generator is not None:
        if cfg.tumor_generator is not None or cfg.healthy_generator is not None:
            raise LiverGanError("give either generator= (conditional) or tumor_generator= and healthy_generator=, not both")
        generator, train_cfg = load_generator(Path(cfg.generator), device)
        return conditional_source(generator, device), train_cfg, {"generator": cfg.generator}
    if cfg.tumor_generator is None or cfg.healthy_generator is None:
        raise LiverGanError(
            "generator=RUN_DIR_OR_PT (a conditional model) or both tumor_generator= and healthy_generator= are required"
        )
    tumor, tumor_cfg = load_generator(Path(cfg.tumor_generator), device)
    healthy, healthy_cfg = load_generator(Path(cfg.healthy_generator), device)
    _check_per_class_pair(tumor_cfg, healthy_cfg)
    generators = {"tumor_generator": cfg.tumor_generator, "healthy_generator": cfg.healthy_generator}
    return per_class_source(tumor, healthy, device), tumor_cfg, generators


def _check_per_class_pair(tumor_cfg: DictConfig, healthy_cfg: DictConfig) -> None:
    """Both runs must come from the same data and patient split, each on its own class."""
    for name, train_cfg, subset in (("tumor_generator", tumor_cfg, Subset.tumor), ("healthy_generator", healthy_cfg, Subset.healthy)):
        if train_cfg.model.conditional or Subset(train_cfg.dataset.subset) != subset:
            raise LiverGanError(f"{name} must be an unconditional run trained with dataset.subset={subset.value}")
    without_subset = [
        {**OmegaConf.to_container(train_cfg.dataset), "subset": None, "seed": train_cfg.seed}
        for train_cfg in (tumor_cfg, healthy_cfg)
    ]
    if without_subset[0] != without_subset[1]:
        raise LiverGanError(
            "tumor_generator and healthy_generator were trained on different data, resolution or seed (patient split); "
            "train both with the same dataset.* and seed"
        )


def synthetic_labels(real_labels: Tensor, count: int, classes: SyntheticClasses) -> Tensor:
    """Class labels for ``count`` synthetic slices: the real mix (matched) or half and half."""
    if classes == SyntheticClasses.balanced:
        return balanced_labels(count, 2)
    num_tumor = round(count * real_labels.double().mean().item())
    return torch.cat([torch.full((count - num_tumor,), HEALTHY), torch.full((num_tumor,), TUMOR)])


def arm_training_set(
    arm: Arm, train: SliceSet, source: SyntheticSource, classes: SyntheticClasses, seed: int
) -> tuple[Tensor, Tensor, int]:
    """Images and labels the arm trains on with ``seed``, and how many of them are synthetic."""
    count = round(arm.synthetic_ratio * len(train))
    labels = synthetic_labels(train.labels, count, classes)
    images = source(labels, seed) if count else torch.empty(0, *train.images.shape[1:])
    if arm.uses_real:
        images, labels = torch.cat([train.images, images]), torch.cat([train.labels, labels])
    return images, labels, count


def summarise(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values), "values": values}


def compare_with_real_only(arm: dict, real_only: dict) -> dict:
    """Difference of each metric's mean from the real-only arm, and whether it beats the seed spread."""
    comparison = {}
    for metric in real_only["metrics"]:
        a, b = arm["metrics"][metric], real_only["metrics"][metric]
        delta = a["mean"] - b["mean"]
        comparison[metric] = {"delta": delta, "significant": abs(delta) >= a["std"] + b["std"]}
    return comparison


@dataclass(frozen=True)
class Scores:
    """One trained model's results on the real validation slices."""

    metrics: dict[str, float]
    per_patient: dict[str, dict[str, float | None]] | None = None  # patient -> metric -> value


# (training slices, their classes, seed) -> the model's Scores on the real validation slices.
TrainAndScore = Callable[[Tensor, Tensor, int], Scores]


def classification_scorer(cfg: DictConfig, val: SliceSet, device: torch.device) -> TrainAndScore:
    """The healthy-vs-tumor classifier of ``cfg.classifier``, on the CT channel of the slices."""
    resolution = val.images.shape[-1]

    def train_and_score(images: Tensor, labels: Tensor, seed: int) -> Scores:
        model = train_classifier(cfg.classifier, ct(images), labels, resolution, device, seed)
        return Scores(classification_metrics(tumor_probabilities(model, ct(val.images), device), val.labels))

    return train_and_score


def segmentation_scorer(segmenter: DictConfig, val: SliceSet, device: torch.device) -> TrainAndScore:
    """A liver and tumor U-Net (``segmenter``), trained on slices with their masks; Dice per
    validation patient, and each structure's mean over the patients that have it."""
    references = label_maps(val.images)

    def train_and_score(images: Tensor, labels: Tensor, seed: int) -> Scores:
        model = train_segmenter(segmenter, ct(images), label_maps(images), device, seed)
        per_patient = dice_per_patient(predict_label_maps(model, ct(val.images), device), references, val.patient_ids)
        means = {}
        for structure, metric in zip(STRUCTURES, SEGMENTATION_METRICS):
            values = [row[structure] for row in per_patient.values() if row[structure] is not None]
            means[metric] = statistics.fmean(values)
        rows = {
            patient: {metric: row[structure] for structure, metric in zip(STRUCTURES, SEGMENTATION_METRICS)}
            for patient, row in per_patient.items()
        }
        return Scores(means, rows)

    return train_and_score


def task_scorer(cfg: DictConfig, val: SliceSet, device: torch.device) -> tuple[tuple[str, ...], TrainAndScore]:
    """The metric names and the train-and-score function of ``cfg.task``."""
    if UtilityTask(cfg.task) is UtilityTask.segmentation:
        return SEGMENTATION_METRICS, segmentation_scorer(cfg.segmenter, val, device)
    return METRICS, classification_scorer(cfg, val, device)


@dataclass(frozen=True)
class ArmSet:
    """What one arm trains on with one seed."""

    images: Tensor
    labels: Tensor
    num_real: int
    num_synthetic: int


# (arm, seed) -> the arm's training slices for that seed.
ArmTrainingSet = Callable[[Arm, int], ArmSet]


@dataclass(frozen=True)
class Study:
    """Where an experiment's slices come from: the real dataset (its train and val split), the
    arms, how each arm's training set is drawn, what the synthetic slices are, and its caveats."""

    dataset: PreparedDataset
    arms: list[Arm]
    training_set: ArmTrainingSet
    source: dict[str, Any]  # for utility.json: the generators, or the insert run
    dataset_name: str
    split_seed: int
    warnings: list[str]


def generated_training_set(train: SliceSet, source: SyntheticSource, classes: SyntheticClasses) -> ArmTrainingSet:
    """The arms of ``utility_arms``: the real training slices and/or a generator's slices."""

    def training_set(arm: Arm, seed: int) -> ArmSet:
        images, labels, num_synthetic = arm_training_set(arm, train, source, classes, seed)
        return ArmSet(images, labels, len(train) if arm.uses_real else 0, num_synthetic)

    return training_set


def run_arms(
    train: SliceSet,
    val: SliceSet,
    source: SyntheticSource,
    cfg: DictConfig,
    device: torch.device,
) -> dict[str, dict]:
    """The arms of ``utility_arms`` with a generator's slices (see :func:`train_arms`)."""
    training_set = generated_training_set(train, source, cfg.synthetic_classes)
    return train_arms(utility_arms(list(cfg.ratios)), training_set, val, cfg, device)


def train_arms(
    arms: Sequence[Arm], training_set: ArmTrainingSet, val: SliceSet, cfg: DictConfig, device: torch.device
) -> dict[str, dict]:
    """Train and test every arm with every seed; per arm the metrics' mean, std and per-seed values,
    and for a task scored per patient each patient's values over the seeds.  The first arm is the
    baseline every other arm is compared with."""
    seeds = list(cfg.seeds)
    if len(set(seeds)) < MIN_SEEDS:
        raise LiverGanError(f"seeds={seeds}: give at least {MIN_SEEDS} distinct seeds, so that a std can be reported")
    metrics, train_and_score = task_scorer(cfg, val, device)
    results: dict[str, dict] = {}
    progress = PhaseProgress("utility", len(arms) * len(seeds), "models")
    for arm in arms:
        per_seed: dict[str, list[float]] = {metric: [] for metric in metrics}
        per_patient: dict[str, dict[str, list[float | None]]] = {}
        for seed in seeds:
            drawn = training_set(arm, seed)
            scores = train_and_score(drawn.images, drawn.labels, seed)
            for metric, value in scores.metrics.items():
                per_seed[metric].append(value)
            for patient, row in (scores.per_patient or {}).items():
                for metric, value in row.items():
                    per_patient.setdefault(patient, {}).setdefault(metric, []).append(value)
            progress.update()
        results[arm.name] = {
            "title": arm.title,
            "num_real": drawn.num_real,
            "num_synthetic": drawn.num_synthetic,
            "metrics": {metric: summarise(values) for metric, values in per_seed.items()},
        }
        if per_patient:
            results[arm.name]["per_patient"] = per_patient
    progress.close()
    for arm in arms[1:]:
        results[arm.name]["vs_real_only"] = compare_with_real_only(results[arm.name], results[arms[0].name])
    return results
