"""Segmentation with masks (issue 16): Dice (MONAI's DiceMetric) per structure and per patient, the
mask checks of an evaluation, and liver-gan-utility task=segmentation end to end on a tiny phantom."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest
import torch
from omegaconf import DictConfig, OmegaConf
from tiny_gan import save_tiny_checkpoint

from liver_gan.data.dataset import SliceSet
from liver_gan.data.labels import HEALTHY, TUMOR
from liver_gan.data.masks import encode
from liver_gan.downstream.schema import SegmenterConfig
from liver_gan.downstream.segmentation import (
    SEGMENTATION_METRICS,
    dice_by_structure,
    dice_per_patient,
    predict_label_maps,
    train_segmenter,
)
from liver_gan.metrics.masks import MaskInputs, class_shares, mask_report, mean_areas

TINY_SEGMENTER = ["segmenter.epochs=1", "segmenter.channels=[4,8]", "segmenter.strides=[2]", "segmenter.batch_size=16"]


def maps_with(liver: tuple[slice, slice] | None, tumor: tuple[slice, slice] | None, size: int = 8) -> torch.Tensor:
    labels = torch.zeros(size, size, dtype=torch.long)
    if liver is not None:
        labels[liver] = 1
    if tumor is not None:
        labels[tumor] = 2
    return labels


def test_dice_is_one_for_a_perfect_prediction_and_zero_for_an_empty_one() -> None:
    reference = torch.stack([maps_with((slice(1, 7), slice(1, 7)), (slice(2, 4), slice(2, 4))),
                             maps_with((slice(0, 4), slice(0, 8)), None)])
    empty = torch.zeros_like(reference)

    assert dice_by_structure(reference, reference) == {"liver": 1.0, "tumor": 1.0}
    assert dice_by_structure(empty, reference) == {"liver": 0.0, "tumor": 0.0}
    # Liver counts its tumor (LiTS's whole-liver score); a slice without tumor gives no tumor Dice.
    half = reference.clone()
    half[0, 2:4, 2:4] = 1  # the tumor called liver: liver perfect, the tumor missed
    assert dice_by_structure(half, reference) == pytest.approx({"liver": 1.0, "tumor": 0.0})
    assert dice_by_structure(reference[1:], reference[1:])["tumor"] is None


def test_dice_per_patient_pools_each_patients_slices() -> None:
    one = maps_with((slice(0, 4), slice(0, 4)), None)  # 16 liver pixels
    reference = torch.stack([one, one, one])
    predicted = torch.stack([one, torch.zeros_like(one), one])
    patients = torch.tensor([7, 7, 9])

    scores = dice_per_patient(predicted, reference, patients)

    # Patient 7: 16 of 32 liver pixels found, no false positives: 2 * 16 / (16 + 32).
    assert scores["7"]["liver"] == pytest.approx(2 / 3) and scores["9"]["liver"] == pytest.approx(1.0)
    assert scores["7"]["tumor"] is None


def test_mask_checks_count_classes_and_areas_by_hand() -> None:
    tumor_map = maps_with((slice(0, 4), slice(0, 4)), (slice(0, 2), slice(0, 2)))  # 16 liver, 4 tumor of 64
    liver_map = maps_with((slice(0, 4), slice(0, 8)), None)  # 32 liver
    maps = torch.stack([tumor_map, liver_map, tumor_map])
    classes = torch.tensor([TUMOR, TUMOR, HEALTHY])

    assert class_shares(maps, classes) == {"tumor": 0.5, "clear": 0.0}
    assert class_shares(maps, None) == {"tumor": None, "clear": None}
    assert mean_areas(maps) == pytest.approx({"liver": (16 + 32 + 16) / 192, "tumor": 8 / 192})


def blob_slices(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Slices whose CT shows the liver (bright square) and tumor (brighter square) of their label maps."""
    rng = torch.Generator().manual_seed(seed)
    maps = torch.zeros(count, 16, 16, dtype=torch.long)
    for index in range(count):
        top, left = torch.randint(0, 6, (2,), generator=rng).tolist()
        maps[index, top : top + 10, left : left + 10] = 1
        if index % 2:
            maps[index, top + 3 : top + 6, left + 3 : left + 6] = 2
    ct = maps.float().unsqueeze(1) * 0.8 - 0.8 + 0.05 * torch.randn(count, 1, 16, 16, generator=rng)
    return torch.cat([ct, encode(maps)], dim=1), maps


def test_a_segmenter_trained_on_real_slices_finds_their_liver_and_the_agreement_check_uses_it() -> None:
    images, maps = blob_slices(24, seed=0)
    cfg = OmegaConf.structured(SegmenterConfig(channels=[8, 16], strides=[2], epochs=6, batch_size=8, lr=5e-3))
    model = train_segmenter(cfg, images[:, :1], maps, torch.device("cpu"), seed=0)
    val_images, val_maps = blob_slices(8, seed=1)
    assert dice_by_structure(predict_label_maps(model, val_images[:, :1], torch.device("cpu")), val_maps)["liver"] > 0.8

    labels = torch.tensor([TUMOR if index % 2 else HEALTHY for index in range(24)])
    train = SliceSet(images, labels, torch.zeros(24, dtype=torch.long))
    val = SliceSet(val_images, labels[:8], torch.ones(8, dtype=torch.long))
    swapped = torch.cat([val_images[:, :1], val_images.flip(2)[:, 1:]], dim=1)  # masks no longer on their images
    agreeing = mask_report(MaskInputs(val_images, labels[:8], train, val), cfg, torch.device("cpu"), seed=0)
    disagreeing = mask_report(MaskInputs(swapped, labels[:8], train, val), cfg, torch.device("cpu"), seed=0)
    assert agreeing["mask_tumor_share"] == agreeing["mask_tumor_share_real"] == 1.0
    assert agreeing["mask_agreement_dice_liver"] > disagreeing["mask_agreement_dice_liver"] + 0.2
    assert agreeing["mask_agreement_dice_liver_real_val"] == disagreeing["mask_agreement_dice_liver_real_val"]


@pytest.mark.slow
def test_liver_gan_utility_segmentation_runs_its_arms_on_a_tiny_phantom(
    tmp_path: Path, compose_config: Callable[..., DictConfig], tiny_phantom: list[str]
) -> None:
    overrides = [*tiny_phantom, "model.conditional=true", "dataset.subset=all", "dataset.masks=true"]
    run = save_tiny_checkpoint(compose_config, tmp_path / "gan", overrides)
    run_dir = tmp_path / "utility"
    result = subprocess.run(
        [sys.executable, "-c", "from liver_gan.cli.utility import main; main()", f"generator={run}",
         "task=segmentation", "ratios=[0.5]", "device=cpu", f"hydra.run.dir={run_dir}", *TINY_SEGMENTER],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr

    report = json.loads((run_dir / "utility.json").read_text())
    assert report["task"] == "segmentation" and report["metric_names"] == list(SEGMENTATION_METRICS)
    assert list(report["arms"]) == ["real_only", "real_plus_50pct", "synthetic_only"]
    assert report["validation"]["patients"] == 2 and report["segmenter"]["epochs"] == 1
    val_patients = set(report["arms"]["real_only"]["per_patient"])
    assert len(val_patients) == report["validation"]["patients"]
    for arm in report["arms"].values():
        for metric in SEGMENTATION_METRICS:
            summary = arm["metrics"][metric]
            assert len(summary["values"]) == 3 and all(0.0 <= value <= 1.0 for value in summary["values"])
        assert set(arm["per_patient"]) == val_patients
        assert all(len(row["dice_liver"]) == 3 for row in arm["per_patient"].values())
    assert set(report["arms"]["synthetic_only"]["vs_real_only"]) == set(SEGMENTATION_METRICS)
    assert "dice_tumor" in result.stdout and "2 patients" in result.stdout


def test_segmentation_needs_generators_trained_with_masks(
    tmp_path: Path, compose_config: Callable[..., DictConfig], tiny_phantom: list[str]
) -> None:
    run = save_tiny_checkpoint(compose_config, tmp_path / "gan", [*tiny_phantom, "model.conditional=true", "dataset.subset=all"])
    result = subprocess.run(
        [sys.executable, "-c", "from liver_gan.cli.utility import main; main()", f"generator={run}",
         "task=segmentation", "device=cpu", f"hydra.run.dir={tmp_path / 'utility'}"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 2 and "dataset.masks=true" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
