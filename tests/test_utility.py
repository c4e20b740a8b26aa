"""Downstream utility: the three classifier arms on a tiny phantom, and their metrics."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest
import torch
from omegaconf import DictConfig
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tiny_gan import save_tiny_checkpoint

from liver_gan.config import SyntheticClasses
from liver_gan.data.dataset import SliceSet
from liver_gan.data.labels import HEALTHY, TUMOR
from liver_gan.downstream.arms import (
    arm_training_set,
    compare_with_real_only,
    conditional_source,
    load_synthetic_source,
    run_arms,
    summarise,
    synthetic_labels,
    utility_arms,
)
from liver_gan.downstream.classification import METRICS, classification_metrics, roc_auc
from liver_gan.downstream.report import classification_dataset
from liver_gan.errors import LiverGanError

FAST_CLASSIFIER = ["classifier.epochs=1", "classifier.batch_size=16", "classifier.model.channels=[4,8]"]


@pytest.fixture
def compose_utility(compose_config: Callable[..., DictConfig]) -> Callable[..., DictConfig]:
    return lambda overrides: compose_config(overrides, config_name="utility")


@pytest.fixture
def conditional_run(tmp_path: Path, compose_config: Callable[..., DictConfig], tiny_phantom: list[str]) -> Path:
    overrides = tiny_phantom + ["model.conditional=true", "dataset.subset=all"]
    return save_tiny_checkpoint(compose_config, tmp_path / "gan", overrides)


def test_auc_from_ranks_matches_hand_counted_pairs() -> None:
    labels = torch.tensor([TUMOR, TUMOR, HEALTHY, HEALTHY, HEALTHY])
    scores = torch.tensor([0.9, 0.4, 0.4, 0.2, 0.6])
    # Tumor-healthy pairs (6): 0.9 beats all 3; 0.4 beats 0.2, ties 0.4, loses to 0.6 -> (3 + 1.5) / 6.
    assert roc_auc(scores, labels) == pytest.approx(4.5 / 6)
    metrics = classification_metrics(scores, labels)
    assert metrics["sensitivity"] == pytest.approx(0.5)  # 0.9 called tumor, 0.4 not
    assert metrics["specificity"] == pytest.approx(2 / 3)  # 0.6 called tumor
    assert metrics["accuracy"] == pytest.approx(3 / 5)
    with pytest.raises(LiverGanError, match="only one class"):
        roc_auc(scores, torch.full((5,), TUMOR))


def test_arms_are_real_only_mixed_per_ratio_and_synthetic_only() -> None:
    arms = utility_arms([0.5, 1.0])
    assert [arm.name for arm in arms] == ["real_only", "real_plus_50pct", "real_plus_100pct", "synthetic_only"]
    with pytest.raises(LiverGanError, match="ratios"):
        utility_arms([0.5, 0.5])


def test_synthetic_slices_follow_the_real_class_mix_or_half_and_half() -> None:
    real = torch.tensor([TUMOR] * 10 + [HEALTHY] * 30)
    matched = synthetic_labels(real, 20, SyntheticClasses.matched)
    assert (matched == TUMOR).sum() == 5 and len(matched) == 20
    assert (synthetic_labels(real, 20, SyntheticClasses.balanced) == TUMOR).sum() == 10


def test_an_arm_adds_the_requested_share_of_synthetic_slices() -> None:
    train = SliceSet(torch.zeros(10, 1, 8, 8), torch.tensor([TUMOR] * 4 + [HEALTHY] * 6), torch.zeros(10, dtype=torch.long))

    def source(labels: torch.Tensor, seed: int) -> torch.Tensor:
        return torch.ones(len(labels), 1, 8, 8)

    real_only, mixed, _, synthetic_only = utility_arms([0.5, 1.0])
    images, labels, num_synthetic = arm_training_set(mixed, train, source, SyntheticClasses.matched, seed=0)
    assert (len(images), len(labels), num_synthetic) == (15, 15, 5)
    assert images[10:].eq(1).all() and images[:10].eq(0).all()
    images, _, num_synthetic = arm_training_set(synthetic_only, train, source, SyntheticClasses.matched, seed=0)
    assert len(images) == 10 and num_synthetic == 10 and images.eq(1).all()
    assert len(arm_training_set(real_only, train, source, SyntheticClasses.matched, seed=0)[0]) == 10


def test_a_difference_within_the_seed_spread_is_not_significant() -> None:
    def arm(values: list[float]) -> dict:
        return {"metrics": {metric: summarise(values) for metric in METRICS}}

    baseline = arm([0.80, 0.82, 0.84])  # mean 0.82, std 0.02
    assert not compare_with_real_only(arm([0.83, 0.85, 0.87]), baseline)["auc"]["significant"]  # delta 0.03 < 0.04
    assert compare_with_real_only(arm([0.90, 0.92, 0.94]), baseline)["auc"]["significant"]  # delta 0.10 >= 0.04
    assert compare_with_real_only(arm([0.90, 0.92, 0.94]), baseline)["auc"]["delta"] == pytest.approx(0.10)


def test_the_three_arms_run_on_a_tiny_phantom(
    conditional_run: Path, compose_utility: Callable[..., DictConfig]
) -> None:
    cfg = compose_utility([f"generator={conditional_run}", "device=cpu", *FAST_CLASSIFIER])
    source, train_cfg, _ = load_synthetic_source(cfg, torch.device("cpu"))
    dataset = classification_dataset(train_cfg)
    assert set(dataset.val.patient_ids.tolist()).isdisjoint(dataset.train.patient_ids.tolist())
    results = run_arms(dataset.train, dataset.val, source, cfg, torch.device("cpu"))
    assert list(results) == ["real_only", "real_plus_50pct", "real_plus_100pct", "synthetic_only"]
    assert results["real_plus_100pct"]["num_synthetic"] == len(dataset.train)
    assert results["synthetic_only"]["num_real"] == 0
    for arm in results.values():
        for summary in arm["metrics"].values():
            assert len(summary["values"]) == 3
            assert all(0.0 <= value <= 1.0 for value in summary["values"])
            assert summary["std"] >= 0.0
    assert set(results["synthetic_only"]["vs_real_only"]) == set(METRICS)


def test_an_unconditional_generator_is_refused_as_generator(
    tmp_path: Path, compose_config: Callable[..., DictConfig], tiny_phantom: list[str]
) -> None:
    from liver_gan.runs import load_generator

    run = save_tiny_checkpoint(compose_config, tmp_path / "gan", tiny_phantom)
    generator, _ = load_generator(run, torch.device("cpu"))
    with pytest.raises(LiverGanError, match="conditional"):
        conditional_source(generator, torch.device("cpu"))


def test_per_class_generators_must_share_the_patient_split(
    tmp_path: Path,
    compose_config: Callable[..., DictConfig],
    compose_utility: Callable[..., DictConfig],
    tiny_phantom: list[str],
) -> None:
    base = tiny_phantom
    tumor = save_tiny_checkpoint(compose_config, tmp_path / "tumor", base + ["dataset.subset=tumor"])
    healthy = save_tiny_checkpoint(compose_config, tmp_path / "healthy", base + ["dataset.subset=healthy"])
    other_split = save_tiny_checkpoint(compose_config, tmp_path / "other", base + ["dataset.subset=healthy", "seed=1"])
    cfg = compose_utility([f"tumor_generator={tumor}", f"healthy_generator={healthy}"])
    source, _, generators = load_synthetic_source(cfg, torch.device("cpu"))
    labels = torch.tensor([TUMOR, HEALTHY, TUMOR])
    assert source(labels, 0).shape == (3, 1, 32, 32)
    assert torch.equal(source(labels, 0), source(labels, 0))
    assert set(generators) == {"tumor_generator", "healthy_generator"}
    with pytest.raises(LiverGanError, match="seed"):
        load_synthetic_source(compose_utility([f"tumor_generator={tumor}", f"healthy_generator={other_split}"]), "cpu")
    with pytest.raises(LiverGanError, match="subset=tumor"):
        load_synthetic_source(compose_utility([f"tumor_generator={healthy}", f"healthy_generator={healthy}"]), "cpu")


def test_fewer_than_three_seeds_are_refused(conditional_run: Path, compose_utility: Callable[..., DictConfig]) -> None:
    cfg = compose_utility([f"generator={conditional_run}", "seeds=[0,1]"])
    empty = SliceSet(torch.zeros(0, 1, 8, 8), torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long))
    with pytest.raises(LiverGanError, match="at least 3"):
        run_arms(empty, empty, lambda labels, seed: labels, cfg, torch.device("cpu"))


def test_liver_gan_utility_writes_the_table_json_and_tensorboard(conditional_run: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "utility"
    result = subprocess.run(
        [sys.executable, "-c", "from liver_gan.cli.utility import main; main()",
         f"generator={conditional_run}", "ratios=[0.5]", "device=cpu", f"hydra.run.dir={run_dir}", *FAST_CLASSIFIER],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((run_dir / "utility.json").read_text())
    assert list(report["arms"]) == ["real_only", "real_plus_50pct", "synthetic_only"]
    assert report["validation"]["patients"] == 2
    assert report["validation"]["slices"] == report["validation"]["tumor_slices"] + report["validation"]["healthy_slices"]
    assert f"{report['validation']['patients']} patients, {report['validation']['slices']} slices" in result.stdout
    assert "n.s." in report["significance_rule"]
    assert all(0 <= report["arms"]["synthetic_only"]["metrics"][m]["mean"] <= 1 for m in METRICS)
    events = EventAccumulator(str(run_dir / "tb"))
    events.Reload()
    assert [event.step for event in events.Scalars("real_only/auc")] == [0, 1, 2]
    assert "synthetic_only/sensitivity_mean" in events.Tags()["scalars"]


def test_liver_gan_utility_without_a_generator_says_what_to_pass(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", "from liver_gan.cli.utility import main; main()", f"hydra.run.dir={tmp_path}"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2
    assert "generator=RUN_DIR_OR_PT" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
