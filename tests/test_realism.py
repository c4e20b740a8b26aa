"""Realism of inserted tumors (issue 22): the two-sample classifier test (AUC near 0.5 for two halves
of the same crops, near 1 for plainly different ones, patients disjoint between training and test),
and liver-gan-utility task=realism end to end on a crafted insert run: FID, KID, AUC, a visual
Turing test kit."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest
import torch
from insert_runs import dataset_node, split, write_insert_run, write_real_dataset
from omegaconf import DictConfig

from liver_gan.data.dataset import SliceSet
from liver_gan.data.labels import TUMOR
from liver_gan.downstream.realism import patient_halves, realism_report, two_sample_auc
from liver_gan.errors import LiverGanError

SEEDS = (0, 1, 2)


def crops(patients: torch.Tensor, seed: int, disc: bool = False) -> SliceSet:
    """Textured 16-pixel crops, one per entry of ``patients``; with ``disc`` a bright disc in each."""
    rng = torch.Generator().manual_seed(seed)
    images = torch.randn(len(patients), 1, 16, 16, generator=rng).mul(0.3).clamp(-1, 1)
    if disc:
        y, x = torch.meshgrid(torch.arange(16), torch.arange(16), indexing="ij")
        images[:, :, (y - 8) ** 2 + (x - 8) ** 2 <= 16] = 0.9
    return SliceSet(images, torch.full((len(patients),), TUMOR), patients)


@pytest.fixture(scope="module")
def classifier(compose_config: Callable[..., DictConfig]) -> DictConfig:
    return compose_config(["classifier.epochs=15", "classifier.model.channels=[8,16]"], "utility", hydra=False).classifier


def test_patient_halves_are_disjoint_cover_every_patient_and_follow_the_seed() -> None:
    patients = torch.tensor([4, 4, 1, 9, 7, 7, 2, 5])
    first, second = patient_halves(patients, seed=0)
    assert not set(first.tolist()) & set(second.tolist())
    assert sorted(first.tolist() + second.tolist()) == [1, 2, 4, 5, 7, 9]
    assert torch.equal(first, patient_halves(patients, seed=0)[0])
    assert any(not torch.equal(first, patient_halves(patients, seed)[0]) for seed in range(1, 5))
    with pytest.raises(LiverGanError, match="at least 2 patients"):
        patient_halves(torch.tensor([3, 3]), seed=0)


def test_two_halves_of_the_same_crops_score_an_auc_near_one_half(classifier: DictConfig) -> None:
    patients = torch.arange(8).repeat_interleave(16)
    pool = crops(patients, seed=0)
    first, second = pool.select(torch.arange(len(pool)) % 2 == 0), pool.select(torch.arange(len(pool)) % 2 == 1)
    aucs = [two_sample_auc(first, second, classifier, seed, torch.device("cpu")) for seed in SEEDS]
    assert abs(statistics.fmean(aucs) - 0.5) < 0.15


def test_plainly_different_crops_score_an_auc_near_one(classifier: DictConfig) -> None:
    patients = torch.arange(8).repeat_interleave(8)
    real, inserted = crops(patients, seed=0), crops(patients, seed=1, disc=True)
    aucs = [two_sample_auc(real, inserted, classifier, seed, torch.device("cpu")) for seed in SEEDS]
    assert min(aucs) > 0.95


def test_the_two_sample_test_needs_both_kinds_on_both_halves(classifier: DictConfig) -> None:
    real, inserted = crops(torch.tensor([1, 1, 2, 2]), seed=0), crops(torch.tensor([1, 1]), seed=1)
    with pytest.raises(LiverGanError, match="crops of one kind only"):
        two_sample_auc(real, inserted, classifier, 0, torch.device("cpu"))


@pytest.mark.slow
def test_liver_gan_utility_task_realism_reports_fid_kid_auc_and_writes_a_vtt_kit(tmp_path: Path, fid_weights: Path) -> None:
    real_root = write_real_dataset(tmp_path / "real")
    train, _ = split(seed=0)
    run = write_insert_run(tmp_path / "insert", dataset_node(real_root, tmp_path / "cache"), 0, train)
    out = tmp_path / "realism"
    result = subprocess.run(
        [sys.executable, "-c", "from liver_gan.cli.utility import main; main()", "task=realism", f"inserted={run}",
         "device=cpu", "vtt_slices=10", "classifier.epochs=2", f"hydra.run.dir={out}"],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr

    report = json.loads((out / "realism.json").read_text())
    assert report["crop"] == "liver" and report["inserted"]["patients"] == train
    assert report["inserted_tumor_crops"] == 3 * len(train) and report["real_tumor_crops"] > 0
    assert report["fid"] > 0 and report["kid"]["std"] >= 0
    assert len(report["two_sample_auc"]["values"]) == 3 and 0 <= report["two_sample_auc"]["mean"] <= 1
    key = json.loads(Path(report["vtt"]["key"]).read_text())
    assert Path(report["vtt"]["page"]).is_file() and report["vtt"]["slices"] == 10 and key
    assert "two-sample AUC" in result.stdout and "FID" in result.stdout


def test_realism_needs_an_insert_run(compose_config: Callable[..., DictConfig], tmp_path: Path) -> None:
    cfg = compose_config(["task=realism"], "utility", hydra=False)
    with pytest.raises(LiverGanError, match="task=realism needs inserted=INSERT_RUN"):
        realism_report(cfg, tmp_path, torch.device("cpu"))
