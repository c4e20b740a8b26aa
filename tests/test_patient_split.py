"""``dataset.val_patients`` and ``dataset.test_patients``: a user's own held-out patients, in
split_patients and through prepare_dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest
from nifti_factory import write_lits_dataset
from omegaconf import DictConfig

from liver_gan.data.dataset import prepare_dataset, split_patients
from liver_gan.errors import LiverGanError

HAS_TUMOR = {patient: patient % 3 != 0 for patient in range(1, 11)}


def test_val_patients_override_val_fraction() -> None:
    train, val = split_patients(HAS_TUMOR, 0.5, seed=0, val_patients=[4, 9])

    assert val == [4, 9]
    assert train == [1, 2, 3, 5, 6, 7, 8, 10]


def test_test_patients_are_in_neither_train_nor_val() -> None:
    for seed in range(5):
        train, val = split_patients(HAS_TUMOR, 0.3, seed, test_patients=[2, 3])
        assert {2, 3}.isdisjoint(train + val)
        assert sorted(train + val) == [1, 4, 5, 6, 7, 8, 9, 10]
        assert len(val) == 2  # round(0.3 * the 8 patients left)

    train, val = split_patients(HAS_TUMOR, 0.3, 0, val_patients=[1], test_patients=[2])
    assert (val, 2 in train) == ([1], False)


def test_without_the_new_options_the_split_is_the_old_one() -> None:
    assert split_patients(HAS_TUMOR, 0.2, 7) == split_patients(HAS_TUMOR, 0.2, 7, val_patients=None, test_patients=None)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"val_patients": [4, 99]}, r"dataset\.val_patients=\[4, 99\]: no patient 99 in dataset\.root"),
        ({"test_patients": [0]}, r"dataset\.test_patients=\[0\]: no patient 0 in dataset\.root"),
        ({"val_patients": [4], "test_patients": [4]}, r"both hold patients \[4\]"),
    ],
)
def test_bad_patient_ids_name_the_option(options: dict, message: str) -> None:
    with pytest.raises(LiverGanError, match=message):
        split_patients(HAS_TUMOR, 0.1, 0, **options)


def test_prepare_dataset_holds_out_the_given_patients(tmp_path: Path, compose_config: Callable[..., DictConfig]) -> None:
    root = write_lits_dataset(tmp_path / "LiTS", range(1, 7))
    cfg = compose_config(
        [
            "dataset=lits",
            f"dataset.root={root}",
            f"dataset.cache_dir={tmp_path / 'cache'}",
            "dataset.resolution=16",
            "dataset.subset=all",
            "dataset.val_patients=[2,5]",
            "dataset.test_patients=[6]",
        ],
        config_name="prepare",
        hydra=False,
    )

    dataset = prepare_dataset(cfg.dataset, seed=0)

    assert dataset.summary["patients"]["val"] == [2, 5]
    assert dataset.summary["patients"]["train"] == [1, 3, 4]
    assert set(dataset.train.patient_ids.tolist()) == {1, 3, 4}
    assert set(dataset.val.patient_ids.tolist()) == {2, 5}
