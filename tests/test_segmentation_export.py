"""Generated slices with masks as NIfTI, nnU-Net v2 and LiTS datasets (issue 16): they reload in
nibabel with the right labels, shapes, spacing and Hounsfield units, and the LiTS export reads
back through liver-gan-prepare."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Callable

import nibabel as nib
import numpy as np
import pytest
import torch
from omegaconf import DictConfig

from liver_gan.cli.sample import main as sample_main
from liver_gan.data.masks import encode
from liver_gan.data.schema import HUWindow
from liver_gan.data.segmentation_export import export_lits, export_nifti, export_nnunet
from liver_gan.errors import LiverGanError
from liver_gan.runs import run_dataset
from tiny_gan import save_tiny_checkpoint, tiny_phantom_overrides

WINDOW = HUWindow(level=50.0, width=400.0)
SPACING = (0.9, 0.7, 2.5)  # rows, columns, thickness (mm)
RESOLUTION = 16


def slices_with_masks(count: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(count, 3, R, R) slices in [-1, 1] and their label maps: a liver rectangle on the image's left
    (the patient's right), a tumor in it, both placed asymmetrically so that any flip shows."""
    rng = torch.Generator().manual_seed(seed)
    ct = torch.rand(count, 1, RESOLUTION, RESOLUTION, generator=rng) * 2 - 1
    labels = torch.zeros(count, RESOLUTION, RESOLUTION, dtype=torch.long)
    labels[:, 3:11, 1:7] = 1
    labels[1:, 4:6, 2:4] = 2  # the first slice has no tumor
    return torch.cat([ct, encode(labels)], dim=1), labels


def load(path: Path) -> tuple[np.ndarray, tuple[float, ...]]:
    image = nib.load(str(path))
    return np.asanyarray(image.dataobj), image.header.get_zooms()


def as_displayed(volume: np.ndarray) -> np.ndarray:
    """The one slice of a RAS volume the radiological way (anterior up, the patient's right on the left)."""
    return volume[:, :, 0].T[::-1, ::-1]


def test_nnunet_export_is_a_v2_raw_dataset_that_reloads_with_labels_shapes_spacing_and_hu(tmp_path: Path) -> None:
    images, labels = slices_with_masks(3)
    directory = export_nnunet({"tumor": images}, tmp_path / "Dataset901_Synth", WINDOW, SPACING)

    dataset = json.loads((directory / "dataset.json").read_text())
    assert dataset["channel_names"] == {"0": "CT"}
    assert dataset["labels"] == {"background": 0, "liver": 1, "tumor": 2}
    assert dataset["numTraining"] == 3 and dataset["file_ending"] == ".nii.gz"
    cases = sorted(path.name for path in (directory / "labelsTr").iterdir())
    assert cases == [f"tumor_{index:05d}.nii.gz" for index in range(3)]
    assert sorted(path.name for path in (directory / "imagesTr").iterdir()) == [
        case.replace(".nii.gz", "_0000.nii.gz") for case in cases
    ]
    for index, case in enumerate(cases):
        hu, zooms = load(directory / "imagesTr" / case.replace(".nii.gz", "_0000.nii.gz"))
        seg, seg_zooms = load(directory / "labelsTr" / case)
        assert hu.shape == seg.shape == (RESOLUTION, RESOLUTION, 1)
        assert zooms == seg_zooms == pytest.approx((SPACING[1], SPACING[0], SPACING[2]))  # x runs along columns
        np.testing.assert_array_equal(as_displayed(seg), labels[index].numpy())
        expected_hu = images[index, 0].double().numpy() * 200 + 50
        np.testing.assert_allclose(as_displayed(hu), expected_hu, atol=0.5 + 1e-6)
        assert hu.min() >= -150 and hu.max() <= 250  # inside the window: what lies outside is not recoverable


def test_nifti_export_writes_each_slice_and_its_label_map(tmp_path: Path) -> None:
    images, labels = slices_with_masks(2)
    directory = export_nifti({"healthy": images[:1], "tumor": images[1:]}, tmp_path / "nifti", WINDOW, SPACING)

    assert sorted(path.name for path in (directory / "tumor").iterdir()) == ["00000.nii.gz", "00000_seg.nii.gz"]
    seg, _ = load(directory / "tumor" / "00000_seg.nii.gz")
    np.testing.assert_array_equal(as_displayed(seg), labels[1].numpy())
    # Without masks, only the images.
    plain = export_nifti({"samples": images[:, :1]}, tmp_path / "plain", WINDOW, SPACING)
    assert sorted(path.name for path in (plain / "samples").iterdir()) == ["00000.nii.gz", "00001.nii.gz"]


def test_exports_refuse_to_overwrite_and_need_masks_for_labelled_formats(tmp_path: Path) -> None:
    images, _ = slices_with_masks(1)
    export_lits({"tumor": images}, tmp_path / "lits", WINDOW, SPACING)
    before = sorted(path.name for path in (tmp_path / "lits").iterdir())

    with pytest.raises(LiverGanError, match="exists already"):
        export_lits({"tumor": images.flip(2)}, tmp_path / "lits", WINDOW, SPACING)
    with pytest.raises(LiverGanError, match="dataset.masks=true"):
        export_nnunet({"tumor": images[:, :1]}, tmp_path / "Dataset902_X", WINDOW, SPACING)

    assert sorted(path.name for path in (tmp_path / "lits").iterdir()) == before
    assert not (tmp_path / "Dataset902_X").exists()


def test_lits_export_reads_back_through_liver_gan_prepare(tmp_path: Path) -> None:
    images, labels = slices_with_masks(4)
    export_lits({"healthy": images[:1], "tumor": images[1:]}, tmp_path / "lits", WINDOW, SPACING)
    cache = tmp_path / "cache"
    command = [
        str(Path(sys.executable).parent / "liver-gan-prepare"),
        "dataset=lits",
        f"dataset.root={tmp_path / 'lits'}",
        f"dataset.cache_dir={cache}",
        f"dataset.resolution={RESOLUTION}",
        "dataset.masks=true",
        "dataset.val_fraction=0",
        "dataset.subset=all",
        "dataset.num_workers=1",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr

    summary = json.loads((tmp_path / "run" / "dataset_summary.json").read_text())
    assert summary["counts"]["train"] == {"healthy": 1, "tumor": 3}
    entry = next(path for path in cache.iterdir() if path.is_dir())
    order = np.load(entry / "patient_ids.npy")  # volume-N is patient N, in export order
    np.testing.assert_array_equal(np.load(entry / "label_maps.npy"), labels.numpy()[order])
    read_back = np.load(entry / "images.npy").astype(np.float64)
    np.testing.assert_allclose(read_back, images[order, 0].double().numpy(), atol=1 / 200 + 1e-3)  # 0.5 HU, float16
    np.testing.assert_allclose(np.load(entry / "spacing.npy"), np.tile(SPACING, (4, 1)), rtol=1e-6)


def test_sample_cli_exports_nnunet_with_the_spacing_of_the_runs_own_data(
    compose_config: Callable[..., DictConfig], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    overrides = [*tiny_phantom_overrides(tmp_path), "dataset.masks=true", "dataset.subset=all", "model.conditional=true"]
    train_dir = save_tiny_checkpoint(compose_config, tmp_path / "train", overrides)
    argv = ["liver-gan-sample", f"checkpoint={train_dir}", "num_samples=2", "format=nnunet", f"out={tmp_path / 'out'}",
            "nnunet_dataset=Dataset903_Tiny", f"hydra.run.dir={tmp_path / 'hydra'}", "device=cpu"]
    monkeypatch.setattr(sys, "argv", argv)
    sample_main()

    directory = tmp_path / "out" / "Dataset903_Tiny"
    train_cfg = compose_config(overrides, hydra=False)
    dataset = run_dataset(train_cfg)
    assert json.loads((directory / "dataset.json").read_text())["numTraining"] == 4 + len(dataset.val)
    # One fold: nnU-Net trains on the synthetic cases only and validates on the run's real validation slices.
    real_cases = sorted(f"real_{patient:04d}_{number:04d}" for patient, number in
                        zip(dataset.val.patient_ids.tolist(), dataset.val.slice_indices.tolist()))
    synthetic = sorted(f"{stack}_{index:05d}" for stack in ("healthy", "tumor") for index in range(2))
    assert len(dataset.val) > 0
    assert json.loads((directory / "splits_final.json").read_text()) == [{"train": synthetic, "val": real_cases}]
    assert {path.name.removesuffix(".nii.gz") for path in (directory / "labelsTr").iterdir()} == {*synthetic, *real_cases}
    rows, columns, thickness = dataset.train.spacing.median(dim=0).values.tolist()
    _, zooms = load(directory / "imagesTr" / "tumor_00001_0000.nii.gz")
    assert zooms == pytest.approx((columns, rows, thickness))
    seg, _ = load(directory / "labelsTr" / "healthy_00000.nii.gz")
    assert seg.shape == (32, 32, 1) and set(np.unique(seg)) <= {0, 1, 2}
