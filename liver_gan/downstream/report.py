"""The downstream-utility report: the real splits, every arm's metrics, the caveats, and how they
are written (``utility.json``, TensorBoard scalars, a terminal table)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.tensorboard import SummaryWriter

from liver_gan.atomic import atomic_write_json
from liver_gan.config import UtilityTask
from liver_gan.data.dataset import PreparedDataset, SliceSet
from liver_gan.data.labels import TUMOR
from liver_gan.data.schema import DatasetName, Subset
from liver_gan.downstream.arms import Study, generated_training_set, load_synthetic_source, train_arms, utility_arms
from liver_gan.data.masks import has_masks
from liver_gan.downstream.classification import METRICS
from liver_gan.downstream.inserted import inserted_study
from liver_gan.downstream.segmentation import SEGMENTATION_METRICS
from liver_gan.errors import LiverGanError
from liver_gan.metrics.schema import RealPool
from liver_gan.runs import run_dataset

UTILITY_FILE = "utility.json"
SIGNIFICANCE_RULE = (
    "a difference from the real-only arm is flagged not significant (n.s.) when "
    "|mean_arm - mean_real_only| < std_arm + std_real_only (sample std over the seeds)"
)


def classification_dataset(train_cfg: DictConfig) -> PreparedDataset:
    """The GAN's dataset over both classes; the GAN's seed gives the GAN's own patient split."""
    return run_dataset(train_cfg, subset=Subset.all.value)


def split_counts(slices: SliceSet) -> dict[str, int]:
    num_tumor = int((slices.labels == TUMOR).sum())
    return {
        "patients": int(slices.patient_ids.unique().numel()),
        "slices": len(slices),
        "tumor_slices": num_tumor,
        "healthy_slices": len(slices) - num_tumor,
    }


def gan_warnings(train_cfg: DictConfig) -> list[str]:
    if RealPool(train_cfg.eval.real_pool) is not RealPool.train:
        return [
            f"the GAN's FID used eval.real_pool={train_cfg.eval.real_pool}: if this checkpoint was picked by "
            "that FID, the validation slices helped choose the GAN and the results are optimistic"
        ]
    return []


def validation_warnings(validation: dict[str, int]) -> list[str]:
    if validation["patients"] < 5:
        return [
            f"only {validation['patients']} validation patients: slices of one patient are correlated, "
            "so the effective sample size is small"
        ]
    return []


def _cell(arm: dict[str, Any], metric: str) -> str:
    summary = arm["metrics"][metric]
    text = f"{summary['mean']:.3f} ± {summary['std']:.3f}"
    if "vs_real_only" in arm:
        comparison = arm["vs_real_only"][metric]
        text += f" ({comparison['delta']:+.3f}{'' if comparison['significant'] else ' n.s.'})"
    return text


def format_utility_table(report: dict[str, Any]) -> str:
    validation, training = report["validation"], report["training"]
    metrics = list(next(iter(report["arms"].values()))["metrics"])
    lines = [
        f"tested on the real validation split: {validation['patients']} patients, {validation['slices']} slices "
        f"({validation['tumor_slices']} tumor, {validation['healthy_slices']} healthy)",
        f"real training split: {training['patients']} patients, {training['slices']} slices; "
        f"mean ± std over seeds {report['seeds']}",
        f"(±x.xxx) = difference from real only; n.s. = {SIGNIFICANCE_RULE.split(' when ')[1]}",
        "",
        f"{'arm':<26}{'real+synth':>12}  " + "".join(f"{metric:<30}" for metric in metrics),
    ]
    for arm in report["arms"].values():
        counts = f"{arm['num_real']}+{arm['num_synthetic']}"
        lines.append(f"{arm['title']:<26}{counts:>12}  " + "".join(f"{_cell(arm, metric):<30}" for metric in metrics))
    lines += [f"warning: {warning}" for warning in report["warnings"]]
    return "\n".join(lines)


def write_tensorboard(log_dir: Path, report: dict[str, Any]) -> None:
    """Per arm and metric, the per-seed values (step = seed) and the mean; the table as text."""
    with SummaryWriter(str(log_dir)) as writer:
        for name, arm in report["arms"].items():
            for metric, summary in arm["metrics"].items():
                for seed, value in zip(report["seeds"], summary["values"]):
                    writer.add_scalar(f"{name}/{metric}", value, global_step=seed)
                writer.add_scalar(f"{name}/{metric}_mean", summary["mean"])
        writer.add_text("utility", f"```\n{format_utility_table(report)}\n```")


def generated_study(cfg: DictConfig, device: torch.device) -> Study:
    """The utility experiment on a GAN's slices (``generator=`` or the per-class pair)."""
    source, train_cfg, generators = load_synthetic_source(cfg, device)
    dataset = classification_dataset(train_cfg)
    training_set = generated_training_set(dataset.train, source, cfg.synthetic_classes)
    return Study(dataset, utility_arms(list(cfg.ratios)), training_set, {"generators": generators},
                 DatasetName(train_cfg.dataset.name).value, int(train_cfg.seed), gan_warnings(train_cfg))


def utility_report(cfg: DictConfig, device: torch.device) -> dict[str, Any]:
    """Train and test every arm of ``cfg`` (a ``UtilityConfig``); the report ``utility.json`` holds."""
    task = UtilityTask(cfg.task)
    study = inserted_study(cfg) if cfg.inserted is not None else generated_study(cfg, device)
    dataset = study.dataset
    validation = split_counts(dataset.val)
    check_validation_split(task, validation, has_masks(dataset.val.images))
    model_key, model_cfg = ("segmenter", cfg.segmenter) if task is UtilityTask.segmentation else ("classifier", cfg.classifier)
    return {
        "task": task.value,
        "metric_names": list(SEGMENTATION_METRICS if task is UtilityTask.segmentation else METRICS),
        **study.source,
        "dataset": {"name": study.dataset_name, "key": dataset.key, "resolution": dataset.resolution, "split_seed": study.split_seed},
        "validation": validation,
        "training": split_counts(dataset.train),
        "seeds": list(cfg.seeds),
        "ratios": list(cfg.ratios),
        "synthetic_classes": cfg.synthetic_classes.value,
        model_key: OmegaConf.to_container(model_cfg, resolve=True),
        "significance_rule": SIGNIFICANCE_RULE,
        "warnings": [*study.warnings, *validation_warnings(validation)],
        "arms": train_arms(study.arms, study.training_set, dataset.val, cfg, device),
    }


def check_validation_split(task: UtilityTask, validation: dict[str, int], with_masks: bool) -> None:
    """The real validation patients must allow the task's metrics: both classes for AUC, tumor for its Dice."""
    if task is UtilityTask.segmentation:
        if not with_masks:
            raise LiverGanError(
                "task=segmentation needs slices with their masks: give generators trained with dataset.masks=true"
            )
        if validation["tumor_slices"] == 0:
            raise LiverGanError(
                "the real validation split has no tumor slices, so tumor Dice is undefined: "
                "train the GAN (or run liver-gan-insert) with a larger dataset.val_fraction"
            )
    elif validation["tumor_slices"] == 0 or validation["healthy_slices"] == 0:
        raise LiverGanError(
            f"the real validation split has {validation['tumor_slices']} tumor and {validation['healthy_slices']} healthy "
            "slices; both are needed: train the GAN (or run liver-gan-insert) with a larger dataset.val_fraction"
        )


def write_report(report: dict[str, Any], run_dir: Path) -> None:
    """``utility.json`` (atomically) and the TensorBoard scalars under ``run_dir/tb``."""
    atomic_write_json(run_dir / UTILITY_FILE, report)
    write_tensorboard(run_dir / "tb", report)
