"""``liver-gan-utility``: does the synthetic data help a healthy-vs-tumor classifier?

Give a conditional run (``generator=RUN_DIR_OR_PT``) or one run per class
(``tumor_generator=... healthy_generator=...``). The real slices are the GAN's own dataset, rebuilt
from the checkpoint's config with the same patient split (the GAN's seed), over both classes.
Prints a table and writes ``utility.json`` and TensorBoard scalars into the run dir.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from torch.utils.tensorboard import SummaryWriter

from liver_gan.atomic import atomic_write_json
from liver_gan.cli import CONFIG_DIR, report_user_errors
from liver_gan.config import RealPool, Subset
from liver_gan.data.dataset import PreparedDataset, SliceSet
from liver_gan.data.labels import TUMOR
from liver_gan.device import resolve_device
from liver_gan.errors import LiverGanError
from liver_gan.training.checkpoint import load_generator, run_dataset
from liver_gan.utility.arms import (
    SyntheticSource,
    conditional_source,
    per_class_source,
    run_arms,
)
from liver_gan.utility.config import register_utility_configs
from liver_gan.utility.metrics import METRICS

UTILITY_FILE = "utility.json"
SIGNIFICANCE_RULE = (
    "a difference from the real-only arm is flagged not significant (n.s.) when "
    "|mean_arm - mean_real_only| < std_arm + std_real_only (sample std over the seeds)"
)


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


def honesty_warnings(train_cfg: DictConfig, validation: dict[str, int]) -> list[str]:
    warnings = []
    if RealPool(train_cfg.eval.fid.real_pool) is not RealPool.train:
        warnings.append(
            f"the GAN's FID used eval.fid.real_pool={train_cfg.eval.fid.real_pool}: if this checkpoint was picked by "
            "that FID, the validation slices helped choose the GAN and the results are optimistic"
        )
    if validation["patients"] < 5:
        warnings.append(
            f"only {validation['patients']} validation patients: slices of one patient are correlated, "
            "so the effective sample size is small"
        )
    return warnings


def _cell(arm: dict[str, Any], metric: str) -> str:
    summary = arm["metrics"][metric]
    text = f"{summary['mean']:.3f} ± {summary['std']:.3f}"
    if "vs_real_only" in arm:
        comparison = arm["vs_real_only"][metric]
        text += f" ({comparison['delta']:+.3f}{'' if comparison['significant'] else ' n.s.'})"
    return text


def format_utility_table(report: dict[str, Any]) -> str:
    validation, training = report["validation"], report["training"]
    lines = [
        f"tested on the real validation split: {validation['patients']} patients, {validation['slices']} slices "
        f"({validation['tumor_slices']} tumor, {validation['healthy_slices']} healthy)",
        f"real training split: {training['patients']} patients, {training['slices']} slices; "
        f"mean ± std over seeds {report['seeds']}",
        f"(±x.xxx) = difference from real only; n.s. = {SIGNIFICANCE_RULE.split(' when ')[1]}",
        "",
        f"{'arm':<26}{'real+synth':>12}  " + "".join(f"{metric:<30}" for metric in METRICS),
    ]
    for arm in report["arms"].values():
        counts = f"{arm['num_real']}+{arm['num_synthetic']}"
        lines.append(f"{arm['title']:<26}{counts:>12}  " + "".join(f"{_cell(arm, metric):<30}" for metric in METRICS))
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


@report_user_errors
def utility(cfg: DictConfig) -> dict[str, Any]:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    device = resolve_device(cfg.device, "device")
    source, train_cfg, generators = load_synthetic_source(cfg, device)
    dataset = classification_dataset(train_cfg)
    validation = split_counts(dataset.val)
    if validation["tumor_slices"] == 0 or validation["healthy_slices"] == 0:
        raise LiverGanError(
            f"the real validation split has {validation['tumor_slices']} tumor and {validation['healthy_slices']} healthy "
            "slices; both are needed: train the GAN with a larger dataset.val_fraction"
        )
    report = {
        "generators": generators,
        "dataset": {"name": train_cfg.dataset.name, "key": dataset.key, "resolution": dataset.resolution, "split_seed": train_cfg.seed},
        "validation": validation,
        "training": split_counts(dataset.train),
        "seeds": list(cfg.seeds),
        "ratios": list(cfg.ratios),
        "synthetic_classes": cfg.synthetic_classes.value,
        "classifier": OmegaConf.to_container(cfg.classifier, resolve=True),
        "significance_rule": SIGNIFICANCE_RULE,
        "warnings": honesty_warnings(train_cfg, validation),
        "arms": run_arms(dataset.train, dataset.val, source, cfg, device),
    }
    atomic_write_json(run_dir / UTILITY_FILE, report)
    write_tensorboard(run_dir / "tb", report)
    print(format_utility_table(report))
    print(f"wrote {run_dir / UTILITY_FILE}; tensorboard --logdir {run_dir / 'tb'}")
    return report


@hydra.main(config_path=CONFIG_DIR, config_name="utility", version_base="1.3")
def _hydra_main(cfg: DictConfig) -> None:
    utility(cfg)


def main() -> None:
    register_utility_configs()
    _hydra_main()
