"""Finding the volume / segmentation pairs of the LiTS and MSD release layouts."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from liver_gan.data.layouts import Case, find_cases
from liver_gan.data.schema import Layout
from liver_gan.errors import LiverGanError


def touch(*paths: Path) -> None:
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


def test_lits_pairs_are_found_recursively_and_ordered_by_number(tmp_path: Path) -> None:
    batch1, batch2 = tmp_path / "Training Batch 1", tmp_path / "Training Batch 2" / "nested"
    touch(
        batch1 / "volume-28.nii", batch1 / "segmentation-28.nii",
        batch1 / "volume-2.nii.gz", batch2 / "segmentation-2.nii.gz",  # a pair split over folders
        batch2 / "volume-130.nii", batch2 / "segmentation-130.nii.gz",  # mixed suffixes
        batch2 / "._volume-7.nii", batch2 / "._segmentation-7.nii",  # macOS junk
        batch2 / "volume-130.nii.bak", tmp_path / "README.txt",
    )

    cases = find_cases(tmp_path, Layout.lits)

    assert cases == [
        Case(2, batch1 / "volume-2.nii.gz", batch2 / "segmentation-2.nii.gz"),
        Case(28, batch1 / "volume-28.nii", batch1 / "segmentation-28.nii"),
        Case(130, batch2 / "volume-130.nii", batch2 / "segmentation-130.nii.gz"),
    ]


@pytest.mark.parametrize("root_is_task_folder", [True, False])
def test_msd_reads_imagestr_and_labelstr_only(tmp_path: Path, root_is_task_folder: bool) -> None:
    task = tmp_path / "Task03_Liver"
    touch(
        task / "imagesTr" / "liver_10.nii.gz", task / "labelsTr" / "liver_10.nii.gz",
        task / "imagesTr" / "liver_9.nii.gz", task / "labelsTr" / "liver_9.nii.gz",
        task / "imagesTr" / "._liver_9.nii.gz", task / "labelsTr" / "._liver_9.nii.gz",
        task / "imagesTs" / "liver_200.nii.gz",
        task / "dataset.json",
    )

    cases = find_cases(task if root_is_task_folder else tmp_path, Layout.msd)

    assert [case.patient_id for case in cases] == [9, 10]
    assert cases[0] == Case(9, task / "imagesTr" / "liver_9.nii.gz", task / "labelsTr" / "liver_9.nii.gz")


def test_missing_root_names_the_option(tmp_path: Path) -> None:
    with pytest.raises(LiverGanError, match=r"dataset\.root .*nowhere does not exist"):
        find_cases(tmp_path / "nowhere", Layout.lits)


@pytest.mark.parametrize("layout", [Layout.lits, Layout.msd])
def test_no_pairs_found(tmp_path: Path, layout: Layout) -> None:
    touch(tmp_path / "imagesTr" / "notes.txt", tmp_path / "labelsTr" / "notes.txt")

    with pytest.raises(LiverGanError, match=rf"found no volume/segmentation pairs of the {layout.value} layout"):
        find_cases(tmp_path, layout)


def test_msd_without_imagestr_says_where_to_point(tmp_path: Path) -> None:
    with pytest.raises(LiverGanError, match="point dataset.root at the Task03_Liver folder"):
        find_cases(tmp_path, Layout.msd)


def test_volume_without_segmentation_is_named(tmp_path: Path) -> None:
    touch(tmp_path / "volume-1.nii", tmp_path / "segmentation-1.nii", tmp_path / "volume-5.nii.gz")

    with pytest.raises(LiverGanError, match=r"volume-5\.nii\.gz: volume has no segmentation file for patient 5"):
        find_cases(tmp_path, Layout.lits)


def test_segmentation_without_volume_is_named(tmp_path: Path) -> None:
    touch(tmp_path / "volume-1.nii", tmp_path / "segmentation-1.nii", tmp_path / "segmentation-6.nii")

    with pytest.raises(LiverGanError, match=r"segmentation-6\.nii: segmentation has no volume file"):
        find_cases(tmp_path, Layout.lits)


def test_skip_bad_leaves_an_unpaired_patient_out_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    touch(tmp_path / "volume-1.nii", tmp_path / "segmentation-1.nii", tmp_path / "volume-5.nii.gz")

    with caplog.at_level(logging.WARNING):
        cases = find_cases(tmp_path, Layout.lits, skip_bad=True)

    assert [case.patient_id for case in cases] == [1]
    assert "skipping patient 5" in caplog.text and "volume-5.nii.gz" in caplog.text


def test_a_patient_twice_is_refused(tmp_path: Path) -> None:
    touch(tmp_path / "a" / "volume-3.nii", tmp_path / "b" / "volume-3.nii.gz", tmp_path / "segmentation-3.nii")

    with pytest.raises(LiverGanError, match=r"patient 3 also has .*volume-3\.nii; keep one"):
        find_cases(tmp_path, Layout.lits)


def test_symlinked_folders_are_followed_once_even_in_a_loop(tmp_path: Path) -> None:
    """Data linked in from a shared store is found; a link back up the tree is read once."""
    store, root = tmp_path / "store", tmp_path / "LiTS"
    touch(store / "volume-5.nii.gz", store / "segmentation-5.nii.gz", root / "volume-1.nii", root / "segmentation-1.nii")
    (root / "Training Batch 2").symlink_to(store, target_is_directory=True)
    (store / "loop").symlink_to(root, target_is_directory=True)

    cases = find_cases(root, Layout.lits)

    linked = root / "Training Batch 2"
    assert cases == [
        Case(1, root / "volume-1.nii", root / "segmentation-1.nii"),
        Case(5, linked / "volume-5.nii.gz", linked / "segmentation-5.nii.gz"),
    ]


def test_a_folder_that_cannot_be_listed_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    locked = tmp_path / "Training Batch 2"
    touch(tmp_path / "volume-1.nii", tmp_path / "segmentation-1.nii", locked / "volume-2.nii", locked / "segmentation-2.nii")
    real_scandir = os.scandir

    def refusing_scandir(path: object = ".") -> object:
        if Path(str(path)) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", refusing_scandir)  # as for a folder without read access
    with pytest.raises(LiverGanError, match=r"Training Batch 2: cannot list this folder \(Permission denied\)"):
        find_cases(tmp_path, Layout.lits)
    with caplog.at_level(logging.WARNING):
        assert [case.patient_id for case in find_cases(tmp_path, Layout.lits, skip_bad=True)] == [1]
    assert "Training Batch 2: cannot list this folder" in caplog.text
