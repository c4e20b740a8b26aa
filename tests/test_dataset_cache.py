"""prepare_dataset: counts, the patient split, subsets, the cache, and every bad-input message."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from nifti_factory import (
    REAL_CT_DIR,
    count_from_masks,
    reorient,
    synthetic_anatomy,
    write_case,
    write_lits_dataset,
)
from omegaconf import DictConfig

from liver_gan.data import dataset as dataset_module
from liver_gan.data.dataset import PreparedDataset, prepare_dataset, split_patients
from liver_gan.data.labels import HEALTHY, TUMOR
from liver_gan.data.schema import Subset
from liver_gan.errors import LiverGanError

MakeConfig = Callable[..., DictConfig]


@pytest.fixture
def make_config(compose_config: Callable[..., DictConfig], tmp_path: Path) -> MakeConfig:
    """``dataset`` config for a root, with a cache in tmp_path, 16 px and serial building."""

    def make(root: Path, *overrides: str, dataset: str = "lits") -> DictConfig:
        base = [
            f"dataset={dataset}",
            f"dataset.root='{root}'",
            f"dataset.cache_dir='{tmp_path / 'cache'}'",
            "dataset.resolution=16",
            "dataset.num_workers=1",
            "dataset.subset=all",
        ]
        return compose_config([*base, *overrides], config_name="prepare").dataset

    return make


def write_mixed_lits(root: Path) -> Path:
    """Six patients in "Training Batch" folders with every storage variant the reader must handle."""
    write_lits_dataset(root / "Training Batch 1", [1, 2], suffix=".nii", axcodes="RAS")
    write_lits_dataset(root / "Training Batch 1", [3], suffix=".nii.gz", axcodes="LPS")
    write_lits_dataset(root / "Training Batch 2", [10, 28], suffix=".nii.gz", axcodes="RAI")
    hu, labels = synthetic_anatomy(seed=130)
    float_mask = np.where(labels == 2, 1.9999, labels).astype(np.float32)
    (stored_hu, affine), (stored_mask, _) = reorient(hu, "PLS"), reorient(float_mask, "PLS")
    write_case(
        root / "Training Batch 2" / "volume-130.nii.gz", root / "Training Batch 2" / "segmentation-130.nii.gz",
        stored_hu, stored_mask, affine, volume_dtype=np.uint16, slope=1.0, inter=-1024.0, mask_dtype=np.float32,
    )
    return root


def write_msd(task: Path, patient_ids: list[int]) -> Path:
    for patient_id in patient_ids:
        hu, labels = synthetic_anatomy(seed=patient_id, tumor=patient_id % 2 == 0)
        (stored_hu, affine), (stored_labels, _) = reorient(hu, "LPS"), reorient(labels, "LPS")
        write_case(task / "imagesTr" / f"liver_{patient_id}.nii.gz", task / "labelsTr" / f"liver_{patient_id}.nii.gz",
                   stored_hu, stored_labels, affine, volume_dtype=np.int16, slope=0.5, inter=-1024.0)
    (task / "imagesTs").mkdir()
    (task / "imagesTs" / "liver_200.nii.gz").write_bytes(b"")
    (task / "imagesTr" / "._liver_0.nii.gz").write_bytes(b"\0" * 10)
    return task


def total_counts(summary: dict) -> tuple[int, int]:
    counts = summary["counts"]
    liver = sum(counts[split]["healthy"] + counts[split]["tumor"] for split in ("train", "val"))
    return liver, sum(counts[split]["tumor"] for split in ("train", "val"))


def test_lits_counts_match_a_direct_count_from_the_masks(tmp_path: Path, make_config: MakeConfig) -> None:
    root = write_mixed_lits(tmp_path / "LiTS")

    prepared = prepare_dataset(make_config(root), seed=0)

    assert total_counts(prepared.summary) == count_from_masks(sorted(root.rglob("segmentation-*")))
    assert sorted(map(int, prepared.summary["per_patient"])) == [1, 2, 3, 10, 28, 130]
    assert prepared.summary["per_patient"]["130"] == {"slices": 16, "liver_slices": 9, "tumor_slices": 3}
    assert len(prepared.train) + len(prepared.val) == total_counts(prepared.summary)[0]


def test_msd_counts_match_a_direct_count_from_the_masks(tmp_path: Path, make_config: MakeConfig) -> None:
    task = write_msd(tmp_path / "Task03_Liver", [0, 1, 2])

    prepared = prepare_dataset(make_config(task, dataset="msd"), seed=0)

    assert total_counts(prepared.summary) == count_from_masks(sorted((task / "labelsTr").glob("liver_*")))
    assert sorted(map(int, prepared.summary["per_patient"])) == [0, 1, 2]


def test_the_same_anatomy_in_any_storage_gives_identical_slices(tmp_path: Path, make_config: MakeConfig) -> None:
    """The same two patients as RAS .nii files, and as LPS with reversed slices in .nii.gz files."""
    as_ras_nii = write_lits_dataset(tmp_path / "a", [1, 2], ".nii", "RAS")
    as_lpi_gz = write_lits_dataset(tmp_path / "b", [1, 2], ".nii.gz", "LPI")

    first = prepare_dataset(make_config(as_ras_nii, "dataset.crop=liver"), seed=0)
    second = prepare_dataset(make_config(as_lpi_gz, "dataset.crop=liver"), seed=0)

    for split in ("train", "val"):
        assert torch.equal(getattr(first, split).images, getattr(second, split).images)
        assert torch.equal(getattr(first, split).slice_indices, getattr(second, split).slice_indices)


def test_train_and_val_never_share_a_patient(tmp_path: Path, make_config: MakeConfig) -> None:
    root = write_lits_dataset(tmp_path / "LiTS", range(1, 10))

    prepared = prepare_dataset(make_config(root, "dataset.val_fraction=0.3"), seed=3)

    patients = prepared.summary["patients"]
    assert not set(patients["train"]) & set(patients["val"])
    assert sorted(patients["train"] + patients["val"]) == list(range(1, 10))
    assert len(patients["val"]) == 3
    assert set(prepared.train.patient_ids.tolist()) <= set(patients["train"])
    assert set(prepared.val.patient_ids.tolist()) <= set(patients["val"])
    assert prepared.summary["counts"]["val"]["tumor"] == int((prepared.val.labels == TUMOR).sum())


def test_split_is_deterministic_from_the_seed_and_stratified() -> None:
    has_tumor = {patient: patient % 4 != 0 for patient in range(1, 41)}  # 30 with tumor, 10 without

    train, val = split_patients(has_tumor, val_fraction=0.2, seed=7)

    assert (train, val) == split_patients(has_tumor, val_fraction=0.2, seed=7)
    assert val != split_patients(has_tumor, val_fraction=0.2, seed=8)[1]
    assert len(val) == 8 and sum(has_tumor[p] for p in val) == 6
    assert split_patients({1: True}, 0.5, 0) == ([1], [])
    assert split_patients({1: True, 2: False}, 0.0, 0) == ([1, 2], [])


@pytest.mark.parametrize(("subset", "labels"), [("tumor", {TUMOR}), ("healthy", {HEALTHY}), ("all", {HEALTHY, TUMOR})])
def test_subset_keeps_its_classes_and_summary_counts_both(
    tmp_path: Path, make_config: MakeConfig, subset: str, labels: set
) -> None:
    root = write_lits_dataset(tmp_path / "LiTS", range(1, 5))

    prepared = prepare_dataset(make_config(root, f"dataset.subset={subset}", "dataset.val_fraction=0"), seed=0)

    assert prepared.subset is Subset(subset)
    assert set(prepared.train.labels.tolist()) == labels
    assert prepared.train.images.dtype == torch.float32 and prepared.train.images.shape[1:] == (1, 16, 16)
    assert prepared.train.labels.dtype == torch.int64 and prepared.train.patient_ids.dtype == torch.int64
    counts = prepared.summary["counts"]["train"]
    assert len(prepared.train) == sum(counts[name] for name in ("healthy", "tumor") if subset in (name, "all"))
    assert len(prepared.train.of_class(TUMOR)) == (counts["tumor"] if subset != "healthy" else 0)


def build_messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if "building" in record.getMessage()]


def test_cache_is_reused_and_rebuilt_when_an_option_or_input_changes(
    tmp_path: Path, make_config: MakeConfig, caplog: pytest.LogCaptureFixture
) -> None:
    root = write_lits_dataset(tmp_path / "LiTS", range(1, 4))
    caplog.set_level(logging.INFO, logger="liver_gan.data.cache")

    first = prepare_dataset(make_config(root), seed=0)
    entry = tmp_path / "cache" / first.key
    built_at = (entry / "meta.json").stat().st_mtime_ns
    again = prepare_dataset(make_config(root, "dataset.subset=tumor", "dataset.val_fraction=0.5"), seed=1)

    assert again.key == first.key and len(build_messages(caplog)) == 1
    assert (entry / "meta.json").stat().st_mtime_ns == built_at
    assert "dataset cache hit" in caplog.text
    keys = {first.key}
    for option in ("dataset.resolution=8", "dataset.window.level=40", "dataset.window.width=300", "dataset.crop=liver"):
        keys.add(prepare_dataset(make_config(root, option), seed=0).key)
    assert len(keys) == 5
    os.utime(root / "volume-2.nii.gz", ns=(built_at, built_at + 10**9))  # the input file changed
    keys.add(prepare_dataset(make_config(root), seed=0).key)
    assert len(keys) == 6 and len(build_messages(caplog)) == 6
    entries = [path.name for path in (tmp_path / "cache").iterdir() if not path.name.endswith(".lock")]
    assert sorted(entries) == sorted(keys)


def test_two_roots_with_equal_names_sizes_and_times_get_their_own_entries(
    tmp_path: Path, make_config: MakeConfig
) -> None:
    """Another site's copy of "the same" files: equal names, sizes and times, other patients."""
    first = write_lits_dataset(tmp_path / "site_a", [1, 2], suffix=".nii")
    second = write_lits_dataset(tmp_path / "site_b", [1, 2], suffix=".nii")
    hu, labels = synthetic_anatomy(seed=7)
    write_case(second / "volume-1.nii", second / "segmentation-1.nii", hu, labels, reorient(hu, "RAS")[1])
    for path in first.iterdir():
        os.utime(second / path.name, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns))
    assert file_stats(first) == file_stats(second)
    assert (first / "volume-1.nii").read_bytes() != (second / "volume-1.nii").read_bytes()

    from_first = prepare_dataset(make_config(first), seed=0)
    from_second = prepare_dataset(make_config(second), seed=0)

    assert from_second.key != from_first.key
    assert not torch.equal(all_images(from_second), all_images(from_first))


def all_images(prepared: PreparedDataset) -> torch.Tensor:
    return torch.cat([prepared.train.images, prepared.val.images])


def file_stats(root: Path) -> list[tuple[str, int, int]]:
    return [(path.name, path.stat().st_size, path.stat().st_mtime_ns) for path in sorted(root.iterdir())]


CONCURRENT_BUILD = textwrap.dedent(
    """
    import json, logging, sys
    from hydra import compose, initialize_config_dir
    from liver_gan.cli import CONFIG_DIR
    from liver_gan.config import register_configs
    from liver_gan.data.dataset import prepare_dataset

    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    register_configs()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="prepare", overrides=sys.argv[1:])
    prepared = prepare_dataset(cfg.dataset, cfg.seed)
    print(json.dumps({"key": prepared.key, "train": len(prepared.train), "images": float(prepared.train.images.sum())}))
    """
)


def test_two_concurrent_builds_give_one_valid_entry(tmp_path: Path) -> None:
    root = write_lits_dataset(tmp_path / "LiTS", range(1, 9))
    overrides = ["dataset=lits", f"dataset.root={root}", f"dataset.cache_dir={tmp_path / 'cache'}"]
    command = [sys.executable, "-c", CONCURRENT_BUILD, *overrides, "dataset.resolution=16", "dataset.num_workers=1"]

    jobs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [job.communicate(timeout=300) for job in jobs]

    assert [job.returncode for job in jobs] == [0, 0], outputs
    results = [json.loads(stdout) for stdout, _ in outputs]
    assert results[0] == results[1]
    assert sum("building" in stderr for _, stderr in outputs) == 1
    assert sum("cache hit" in stderr for _, stderr in outputs) == 1
    entries = [path.name for path in (tmp_path / "cache").iterdir() if not path.name.endswith(".lock")]
    assert entries == [results[0]["key"]]  # no temporary directory left behind
    assert sorted(path.name for path in (tmp_path / "cache" / entries[0]).iterdir()) == [
        ".liver-gan-cache-entry", "images.npy", "labels.npy", "meta.json", "patient_ids.npy", "slice_indices.npy",
        "spacing.npy",
    ]


def test_parallel_build_equals_serial_build(tmp_path: Path, make_config: MakeConfig, monkeypatch) -> None:
    root = write_lits_dataset(tmp_path / "LiTS", range(1, 5))
    monkeypatch.setattr(dataset_module, "PARALLEL_MIN_INPUT_BYTES", 0)  # tiny files: force the worker pool
    pools = []

    class CountedPool(ProcessPoolExecutor):
        def __init__(self, **kwargs) -> None:
            pools.append(kwargs["max_workers"])
            super().__init__(**kwargs)

    monkeypatch.setattr(dataset_module, "ProcessPoolExecutor", CountedPool)
    serial = prepare_dataset(make_config(root, "dataset.num_workers=1", f"dataset.cache_dir='{tmp_path / 'c1'}'"), 0)

    parallel = prepare_dataset(make_config(root, "dataset.num_workers=2", f"dataset.cache_dir='{tmp_path / 'c2'}'"), 0)

    assert pools == [2]
    assert parallel.key == serial.key
    assert parallel.summary == serial.summary
    assert torch.equal(parallel.train.images, serial.train.images)
    assert torch.equal(parallel.train.slice_indices, serial.train.slice_indices)


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def make_bad(root: Path, problem: str) -> None:
    """Write two good patients, then break patient 2 (or the whole root) in the way named."""
    write_lits_dataset(root, [1, 2])
    if problem == "volume without segmentation":
        (root / "segmentation-2.nii.gz").unlink()
    elif problem == "shape mismatch":
        hu, labels = synthetic_anatomy()
        write_case(root / "volume-2.nii.gz", root / "segmentation-2.nii.gz", hu, labels[:, :-2], np.eye(4))
    elif problem == "truncated":
        truncate(root / "volume-2.nii.gz")
    elif problem == "non-finite voxels":
        hu, labels = synthetic_anatomy()
        hu[0, 0, 0] = np.nan
        write_case(root / "volume-2.nii.gz", root / "segmentation-2.nii.gz", hu, labels, np.eye(4), np.float32)


BAD_INPUTS = {
    "volume without segmentation": r"volume-2\.nii\.gz: volume has no segmentation file",
    "shape mismatch": r"segmentation-2\.nii\.gz: shape \(40, 32, 16\) differs from its volume",
    "truncated": r"volume-2\.nii\.gz: cannot read this NIfTI file",
    "non-finite voxels": r"volume-2\.nii\.gz: the volume holds 1 NaN or infinite voxels",
}


@pytest.mark.parametrize("problem", BAD_INPUTS)
def test_a_bad_patient_stops_the_build_or_is_skipped_with_a_warning(
    tmp_path: Path, make_config: MakeConfig, caplog: pytest.LogCaptureFixture, problem: str
) -> None:
    root = tmp_path / "LiTS"
    make_bad(root, problem)

    with pytest.raises(LiverGanError, match=BAD_INPUTS[problem]):
        prepare_dataset(make_config(root), seed=0)
    with caplog.at_level(logging.WARNING):
        prepared = prepare_dataset(make_config(root, "dataset.skip_bad=true"), seed=0)

    assert list(prepared.summary["per_patient"]) == ["1"]
    assert "skipping patient 2" in caplog.text
    with pytest.raises(LiverGanError, match=BAD_INPUTS[problem]):  # the cached build does not hide it
        prepare_dataset(make_config(root), seed=0)


def test_missing_root_and_empty_root_are_named(tmp_path: Path, make_config: MakeConfig) -> None:
    with pytest.raises(LiverGanError, match="dataset.root .*missing does not exist"):
        prepare_dataset(make_config(tmp_path / "missing"), seed=0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(LiverGanError, match="found no volume/segmentation pairs"):
        prepare_dataset(make_config(tmp_path / "empty"), seed=0)


def test_unset_root_says_how_to_set_it(compose_config: Callable[..., DictConfig]) -> None:
    cfg = compose_config(["dataset=lits"], config_name="prepare")

    with pytest.raises(LiverGanError, match="dataset.root is not set"):
        prepare_dataset(cfg.dataset, seed=0)


def test_empty_subset_names_the_option(tmp_path: Path, make_config: MakeConfig) -> None:
    root = tmp_path / "LiTS"
    write_lits_dataset(root, [3, 6])  # multiples of 3 have no tumor

    with pytest.raises(LiverGanError, match="dataset.subset=tumor leaves no training slices"):
        prepare_dataset(make_config(root, "dataset.subset=tumor"), seed=0)


@pytest.mark.parametrize(
    "override",
    ["dataset.resolution=0", "dataset.window.width=0", "dataset.crop_margin=-0.1", "dataset.val_fraction=1.0"],
)
def test_bad_option_values_are_named(tmp_path: Path, make_config: MakeConfig, override: str) -> None:
    root = write_lits_dataset(tmp_path / "LiTS", [1])

    with pytest.raises(LiverGanError, match=override.split("=")[0]):
        prepare_dataset(make_config(root, override), seed=0)


def test_phantom_is_written_then_read_as_lits(tmp_path: Path, make_config: MakeConfig, monkeypatch) -> None:
    written = {}

    def fake_write_phantom(root: Path, cfg) -> Path:
        written.update(root=root, num_volumes=cfg.num_volumes)
        return write_lits_dataset(root / "volumes", [1, 2])

    monkeypatch.setattr(dataset_module, "write_phantom", fake_write_phantom)
    prepared = prepare_dataset(make_config(tmp_path / "phantom", "dataset.phantom.num_volumes=2", dataset="phantom"), 0)

    assert written == {"root": tmp_path / "phantom", "num_volumes": 2}
    assert sorted(prepared.summary["per_patient"]) == ["1", "2"]


@pytest.mark.skipif(not REAL_CT_DIR.is_dir(), reason=f"no real CT in {REAL_CT_DIR}")
def test_real_ct_gives_42_liver_slices_and_no_tumor(make_config: MakeConfig) -> None:
    prepared = prepare_dataset(make_config(REAL_CT_DIR, "dataset.resolution=64"), seed=0)

    assert prepared.summary["per_patient"] == {"0": {"slices": 112, "liver_slices": 42, "tumor_slices": 0}}
    assert len(prepared.train) == 42 and len(prepared.val) == 0
    assert prepared.train.images.shape == (42, 1, 64, 64)
    assert -1 <= prepared.train.images.min() < prepared.train.images.max() <= 1
