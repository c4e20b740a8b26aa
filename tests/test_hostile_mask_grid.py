"""A segmentation on another physical grid than its volume is refused (issue 24, item 6): the
affines are compared within a tolerance, not only their orientation codes."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import nibabel as nib
import numpy as np
import pytest
from nifti_factory import write_lits_dataset
from omegaconf import DictConfig

from liver_gan.data.dataset import prepare_dataset
from liver_gan.data.nifti import read_scan, write_nifti
from liver_gan.errors import LiverGanError


def rotated_in_plane(affine: np.ndarray, degrees: float) -> np.ndarray:
    angle = math.radians(degrees)
    rotation = np.eye(4)
    rotation[:2, :2] = [[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]]
    return rotation @ affine


def shifted(affine: np.ndarray) -> np.ndarray:
    moved = affine.copy()
    moved[0, 3] += 100.0
    return moved


def respaced(affine: np.ndarray) -> np.ndarray:
    return affine @ np.diag([2.5, 2.5, 2.0, 1.0])  # 0.8 x 0.8 x 2.5 mm becomes 2 x 2 x 5 mm


def rewrite_segmentation(path: Path, change: Callable[[np.ndarray], np.ndarray]) -> None:
    image = nib.load(path)
    write_nifti(path, np.asarray(image.dataobj), change(image.affine))


@pytest.mark.parametrize("change", [shifted, respaced, lambda affine: rotated_in_plane(affine, 20.0)],
                         ids=["origin+100mm", "spacing", "rotation20"])
def test_a_mask_on_another_grid_is_refused_naming_both_files(tmp_path: Path, change: Callable) -> None:
    root = write_lits_dataset(tmp_path / "LiTS", [1])
    volume, segmentation = root / "volume-1.nii.gz", root / "segmentation-1.nii.gz"
    rewrite_segmentation(segmentation, change)
    with pytest.raises(LiverGanError) as refused:
        read_scan(volume, segmentation)
    message = str(refused.value)
    assert str(segmentation) in message and str(volume) in message and "another physical grid" in message
    assert "\n" not in message


def test_float_rounding_of_the_affine_is_accepted(tmp_path: Path) -> None:
    root = write_lits_dataset(tmp_path / "LiTS", [1])
    rewrite_segmentation(root / "segmentation-1.nii.gz", lambda affine: affine + 1e-5)
    assert read_scan(root / "volume-1.nii.gz", root / "segmentation-1.nii.gz").num_slices > 0


def test_skip_bad_leaves_the_patient_with_a_shifted_mask_out(
    tmp_path: Path, compose_config: Callable[..., DictConfig]
) -> None:
    root = write_lits_dataset(tmp_path / "LiTS", range(1, 5))
    rewrite_segmentation(root / "segmentation-2.nii.gz", shifted)
    overrides = ["dataset=lits", f"dataset.root='{root}'", f"dataset.cache_dir='{tmp_path / 'cache'}'",
                 "dataset.resolution=16", "dataset.subset=all", "dataset.val_fraction=0.3"]
    with pytest.raises(LiverGanError, match="dataset.skip_bad=true to leave patient 2 out"):
        prepare_dataset(compose_config(overrides, config_name="prepare").dataset, seed=0)
    prepared = prepare_dataset(compose_config([*overrides, "dataset.skip_bad=true"], config_name="prepare").dataset, seed=0)
    patients = set(prepared.train.patient_ids.tolist()) | set(prepared.val.patient_ids.tolist())
    assert 2 not in patients and patients


def test_a_complex_valued_volume_is_refused(tmp_path: Path) -> None:
    root = write_lits_dataset(tmp_path / "LiTS", [1])
    volume = root / "volume-1.nii.gz"
    image = nib.load(volume)
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj).astype(np.complex64), image.affine), volume)
    with pytest.raises(LiverGanError, match="complex64, not real numbers"):
        read_scan(volume, root / "segmentation-1.nii.gz")


@pytest.mark.parametrize("labels, warning", [((0,), "all background"), ((0, 2), "tumor but no liver")])
def test_a_mask_without_liver_is_named_in_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, labels: tuple[int, ...], warning: str
) -> None:
    root = write_lits_dataset(tmp_path / "LiTS", [1])
    segmentation = root / "segmentation-1.nii.gz"
    image = nib.load(segmentation)
    mask = np.asarray(image.dataobj)
    mask = np.where(mask > 0, labels[-1], 0).astype(np.uint8)
    write_nifti(segmentation, mask, image.affine)
    read_scan(root / "volume-1.nii.gz", segmentation)
    assert any(warning in record.getMessage() and str(segmentation) in record.getMessage() for record in caplog.records)
