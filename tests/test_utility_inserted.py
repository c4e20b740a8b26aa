"""liver-gan-utility inserted=R (issue 22): the real data and split come from the insert run's record,
the arms are real / real + inserted / label-free, tumor Dice per held-out patient over seeds, and an
inserted case of a held-out patient never reaches training."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest
import torch
from insert_runs import PAINTED_SLICES, dataset_node, split, write_insert_run, write_real_dataset
from omegaconf import DictConfig

from liver_gan.data.labels import HEALTHY, TUMOR
from liver_gan.data.masks import label_maps
from liver_gan.downstream.inserted import LABEL_FREE, inserted_arms, inserted_study, load_inserted
from liver_gan.downstream.report import format_utility_table, utility_report
from liver_gan.downstream.segmentation import SEGMENTATION_METRICS
from liver_gan.errors import LiverGanError

SEED = 3
TINY_SEGMENTER = ["segmenter.epochs=1", "segmenter.channels=[4,8]", "segmenter.strides=[2]", "segmenter.batch_size=16"]


@pytest.fixture(scope="module")
def real_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_real_dataset(tmp_path_factory.mktemp("real"))


@pytest.fixture
def insert_run(tmp_path: Path, real_root: Path) -> Path:
    train, _ = split(SEED)
    return write_insert_run(tmp_path / "insert", dataset_node(real_root, tmp_path / "cache"), SEED, train[:4])


def test_the_inserted_slices_are_the_painted_ones_of_training_patients(insert_run: Path) -> None:
    data = load_inserted(insert_run)
    train, val = split(SEED)

    assert data.real.summary["patients"] == {"train": train, "val": val}
    assert data.patients == train[:4]
    # Three painted slices per patient, each healthy in its source, so all of them are label-free.
    assert len(data.tumor) == 3 * 4 and len(data.label_free) == len(data.tumor)
    assert set(data.tumor.slice_indices.tolist()) <= set(PAINTED_SLICES)
    assert set(data.tumor.patient_ids.tolist()) == set(train[:4])
    assert (data.tumor.labels == TUMOR).all() and (label_maps(data.tumor.images) == 2).flatten(1).any(1).all()


def test_the_label_free_arm_uses_no_real_tumor_label_and_the_mixed_arm_its_ratio(
    insert_run: Path, compose_config: Callable[..., DictConfig]
) -> None:
    cfg = compose_config([f"inserted={insert_run}", "task=segmentation", "ratios=[0.5,2.0]"], "utility", hydra=False)
    study = inserted_study(cfg)
    train = study.dataset.train
    assert [arm.name for arm in study.arms] == ["real_only", "real_plus_50pct_inserted", "real_plus_200pct_inserted", LABEL_FREE]

    label_free = study.training_set(study.arms[-1], 0)
    has_tumor = (label_maps(label_free.images) == 2).flatten(1).any(1)
    assert label_free.num_real == int((train.labels == HEALTHY).sum()) and label_free.num_synthetic == 12
    assert not has_tumor[: label_free.num_real].any() and has_tumor[label_free.num_real :].all()

    mixed = study.training_set(study.arms[1], 0)
    assert mixed.num_real == len(train) and mixed.num_synthetic == round(0.5 * len(train))
    assert torch.equal(mixed.images[: len(train)], train.images)
    # Twice the real count from a pool of 12 repeats slices, but differently for another seed.
    many, other = study.training_set(study.arms[2], 0), study.training_set(study.arms[2], 1)
    assert many.num_synthetic == 2 * len(train) and not torch.equal(many.images, other.images)


def test_the_utility_reports_tumor_dice_per_held_out_patient_for_the_three_arms_with_seeds(
    insert_run: Path, compose_config: Callable[..., DictConfig]
) -> None:
    cfg = compose_config(
        [f"inserted={insert_run}", "task=segmentation", "ratios=[0.5]", "device=cpu", *TINY_SEGMENTER], "utility", hydra=False
    )
    report = utility_report(cfg, torch.device("cpu"))

    _, val = split(SEED)
    assert list(report["arms"]) == ["real_only", "real_plus_50pct_inserted", LABEL_FREE]
    assert report["inserted"]["patients"] == split(SEED)[0][:4] and report["dataset"]["split_seed"] == SEED
    assert report["validation"]["patients"] == len(val)
    for arm in report["arms"].values():
        assert set(arm["per_patient"]) == {str(patient) for patient in val}
        for metric in SEGMENTATION_METRICS:
            assert len(arm["metrics"][metric]["values"]) == 3
            assert all(0.0 <= value <= 1.0 for value in arm["metrics"][metric]["values"])
    for name in ("real_plus_50pct_inserted", LABEL_FREE):
        assert set(report["arms"][name]["vs_real_only"]["dice_tumor"]) == {"delta", "significant"}
    assert "label-free" in format_utility_table(report) and "dice_tumor" in format_utility_table(report)


def test_an_inserted_case_of_a_validation_patient_stops_in_one_line(tmp_path: Path, real_root: Path) -> None:
    train, val = split(SEED)
    run = write_insert_run(tmp_path / "insert", dataset_node(real_root, tmp_path / "cache"), SEED, [train[0], val[0]])
    result = subprocess.run(
        [sys.executable, "-c", "from liver_gan.cli.utility import main; main()", f"inserted={run}",
         "task=segmentation", "device=cpu", f"hydra.run.dir={tmp_path / 'utility'}"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert f"volume-{val[0]}.nii.gz" in result.stderr and "not a training patient" in result.stderr
    assert not (tmp_path / "utility" / "utility.json").exists()


def test_the_record_is_validated_against_the_dataset_schema(tmp_path: Path, real_root: Path) -> None:
    with pytest.raises(LiverGanError, match=r"config.yaml: its dataset node is not a valid DatasetConfig.*rooot"):
        load_inserted(write_insert_run(tmp_path / "typo", {**dataset_node(real_root, tmp_path), "rooot": "x"}, SEED, []))
    with pytest.raises(LiverGanError, match="config.yaml: its dataset node"):
        load_inserted(write_insert_run(tmp_path / "type", {**dataset_node(real_root, tmp_path), "resolution": "big"}, SEED, []))
    with pytest.raises(LiverGanError, match="seed='x' must be an integer"):
        load_inserted(write_insert_run(tmp_path / "seed", dataset_node(real_root, tmp_path), "x", []))  # type: ignore[arg-type]
    with pytest.raises(LiverGanError, match=r"no \.hydra/config\.yaml there"):
        load_inserted(real_root)


def test_inserted_arms_refuse_bad_ratios() -> None:
    with pytest.raises(LiverGanError, match="distinct positive"):
        inserted_arms([0.5, 0.5])
    assert [(arm.uses_real, arm.synthetic_ratio) for arm in inserted_arms([1.0])] == [(True, 0.0), (True, 1.0), (False, 0.0)]
