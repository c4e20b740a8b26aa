"""The final table (training's result and liver-gan-eval's) prints every metric measured, grouped:
per-class FID of conditional runs, the mask checks of masks runs (issue 26)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from liver_gan.data.dataset import SliceSet
from liver_gan.data.labels import HEALTHY, TUMOR
from liver_gan.downstream.schema import SegmenterConfig
from liver_gan.metrics import evaluate
from liver_gan.metrics.evaluate import evaluate_generator
from liver_gan.metrics.inception import FeatureExtractor
from liver_gan.metrics.masks import CPU_FULL_SEGMENTER_MINUTES, MASK_KEYS, MaskInputs, mask_report, segmenter_epochs
from liver_gan.metrics.summary import metric_lines
from liver_gan.training.outcome import result_lines
from test_fid import PooledPixels, eval_config, tiny_generator, two_class_dataset
from test_segmentation_utility import blob_slices


def test_a_conditional_evaluation_prints_each_class_and_every_group_it_measured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    extractor = FeatureExtractor(PooledPixels(), "pooled.pth", "0" * 64, torch.device("cpu"))
    monkeypatch.setattr(evaluate, "load_feature_extractor", lambda weights, device: extractor)
    metrics = evaluate_generator(
        tiny_generator(conditional=True), two_class_dataset(), eval_config(tmp_path, 16, 24), tmp_path, "cpu", 0
    )
    lines = metric_lines(metrics)
    header = lines.index("  per class       FID  KID                    real   fake")
    for offset, (name, row) in enumerate(metrics["per_class"].items(), start=1):
        kid, counts = f"{row['kid_mean']:.4g} ± {row['kid_std']:.2g}", f"{row['num_real']:>6} {row['num_fake']:>6}"
        assert lines[header + offset] == f"    {name:<8} {row['fid']:>8.4g}  {kid:<20} {counts}"
    groups = [line.split()[0] for line in lines if re.match(r"  \S", line)]
    quality = ["FID", "FID", "KID", "KID", "precision", "recall", "density", "coverage"]  # FID and KID: floor too
    assert groups == [*quality, "per", "diversity", "memorised", "measured"]
    assert any(line.lstrip().startswith("pixel detail: ") for line in lines)
    assert f"MS-SSIM {metrics['diversity_ms_ssim']:.4g} (real {metrics['diversity_ms_ssim_real']:.4g})" in "\n".join(lines)
    # The training run's result prints the same lines between its outcome and where to look.
    run_lines = result_lines({"status": "completed", "steps": 6, "train_seconds": 1.0, **metrics}, tmp_path, None, 3)
    assert run_lines[1 : 1 + len(lines)] == lines


@pytest.fixture(scope="module")
def mask_metrics() -> dict:
    """The mask checks of slices whose masks fit their images, from a CPU run of a 3-minute budget."""
    images, _ = blob_slices(24, seed=0)
    val_images, _ = blob_slices(8, seed=1)
    labels = torch.tensor([TUMOR if index % 2 else HEALTHY for index in range(24)])
    train = SliceSet(images, labels, torch.zeros(24, dtype=torch.long))
    val = SliceSet(val_images, labels[:8], torch.ones(8, dtype=torch.long))
    cfg = OmegaConf.structured(SegmenterConfig(channels=[8, 16], strides=[2], epochs=20, batch_size=8, lr=5e-3))
    inputs = MaskInputs(val_images, labels[:8], train, val)
    return mask_report(inputs, cfg, torch.device("cpu"), seed=0, budget_minutes=3.0)


def test_a_masks_run_prints_each_mask_check_generated_beside_real(mask_metrics: dict) -> None:
    assert set(mask_metrics) == set(MASK_KEYS)
    lines = metric_lines({**mask_metrics, "num_fake": 8, "num_real": 24, "real_pool": "train"})
    assert lines[0] == "  masks                   generated       real"
    for name, key in [("tumor share", "mask_tumor_share"), ("clear share", "mask_clear_share"),
                      ("liver area", "mask_liver_area"), ("tumor area", "mask_tumor_area")]:
        row = next(line for line in lines if line.startswith(f"    {name}"))
        assert row.split()[-2:] == [f"{mask_metrics[key]:.4g}", f"{mask_metrics[key + '_real']:.4g}"]
    for structure in ("liver", "tumor"):
        key = f"mask_agreement_dice_{structure}"
        row = next(line for line in lines if line.startswith(f"    U-Net Dice {structure}"))
        expected = ["-" if value is None else f"{value:.4g}" for value in (mask_metrics[key], mask_metrics[key + "_real_val"])]
        assert row.split()[3:] == [*expected, "(real:", "on", "validation", "slices)"]
    assert "    U-Net trained 2 epochs on the real training slices" in lines


@pytest.mark.parametrize(
    ("device", "budget", "epochs"),
    [("cpu", 3.0, 2), ("cpu", 0.1, 1), ("cpu", CPU_FULL_SEGMENTER_MINUTES * 2, 20), ("cpu", None, 20), ("cuda", 3.0, 20)],
)
def test_the_mask_checks_unet_is_sized_to_a_cpu_runs_budget(device: str, budget: float | None, epochs: int) -> None:
    assert segmenter_epochs(20, torch.device(device), budget) == epochs


def test_two_folders_print_precision_and_recall_without_run_groups() -> None:
    metrics = {"fid": 12.5, "kid_mean": 0.01, "kid_std": 0.002, "precision": 0.75, "recall": 0.5,
               "num_real": 12, "num_fake": 10, "real": "a", "fake": "b"}
    assert metric_lines(metrics) == [
        "  FID        12.5",
        "  KID        0.01 ± 0.002",
        "  precision  0.75",
        "  recall     0.5",
        "  measured on 10 images of b and 12 of a",
    ]
