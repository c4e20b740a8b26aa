"""The memorisation check flags generated samples that are copies of training slices."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from liver_gan.errors import LiverGanError
from liver_gan.metrics import fidelity, memorisation
from liver_gan.metrics.fidelity import CLOSEST_PAIRS_FILE, fidelity_report
from liver_gan.metrics.memorisation import (
    memorisation_report,
    nearest_training_slices,
    reject_memorised,
    save_closest_pairs,
    validation_threshold,
)

RESOLUTION = 32
PLANTED = [3, 17, 28]  # training slices copied into the generated set


def _images(count: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(count, 1, RESOLUTION, RESOLUTION, generator=generator) * 2 - 1


def _features(count: int, seed: int) -> np.ndarray:
    return np.abs(np.random.default_rng(seed).normal(size=(count, 64)))


@pytest.fixture
def sets() -> dict:
    train, val, fresh = _images(40, seed=0), _images(12, seed=1), _images(10, seed=2)
    train_features, val_features, fresh_features = _features(40, 0), _features(12, 1), _features(10, 2)
    return {
        "train": train,
        "val": val,
        # Planted copies go first, so their positions in the generated set are 0, 1, 2.
        "fake": torch.cat([train[PLANTED], fresh]),
        "train_features": train_features,
        "val_features": val_features,
        "fake_features": np.concatenate([train_features[PLANTED], fresh_features]),
    }


def test_planted_copies_are_found_at_distance_zero(sets: dict) -> None:
    distances, indices = nearest_training_slices(sets["fake"], sets["train"])
    assert indices[:3].tolist() == PLANTED
    assert torch.all(distances[:3] < 1e-6)
    assert torch.all(distances[3:] > 0.3)


def test_the_report_flags_exactly_the_planted_copies(sets: dict) -> None:
    report = memorisation_report(
        sets["fake"], sets["train"], sets["val"], sets["fake_features"], sets["train_features"], sets["val_features"]
    )
    for space in ("pixel", "feature"):
        assert report[f"memorisation_{space}_fraction_closer_than_val"] == pytest.approx(3 / 13)
        assert report[f"memorisation_{space}_fake_to_train_min"] < 1e-6
        assert report[f"memorisation_{space}_val_to_train_min"] > 0.1
        assert report[f"memorisation_{space}_val_to_train_p50"] >= report[f"memorisation_{space}_val_to_train_min"]


def test_a_clean_generator_is_not_flagged(sets: dict) -> None:
    report = memorisation_report(
        sets["fake"][3:], sets["train"], sets["val"], sets["fake_features"][3:], sets["train_features"],
        sets["val_features"],
    )
    assert report["memorisation_pixel_fraction_closer_than_val"] < 0.5
    assert report["memorisation_pixel_fake_to_train_min"] > 0.3


def test_reject_memorised_drops_the_copies_and_keeps_the_order(sets: dict) -> None:
    threshold = validation_threshold(sets["train"], sets["val"])
    kept, dropped = reject_memorised(sets["fake"], sets["train"], threshold)
    assert dropped == 3
    assert torch.equal(kept, sets["fake"][3:])
    kept, dropped = reject_memorised(sets["fake"], sets["train"], 0.0)
    assert dropped == 0 and len(kept) == 13
    with pytest.raises(LiverGanError, match="memorisation_threshold"):
        reject_memorised(sets["fake"], sets["train"], -1.0)


def test_closest_pairs_grid_puts_the_copies_on_top(sets: dict, tmp_path: Path) -> None:
    path = save_closest_pairs(sets["fake"], sets["train"], tmp_path / "pairs.png", num_pairs=4)
    grid = np.asarray(Image.open(path).convert("L"), dtype=np.float64)
    cell = RESOLUTION + 2  # make_grid's default 2-pixel padding
    assert grid.shape == (4 * cell + 2, 2 * cell + 2)
    for row in range(3):  # the three copies: fake and nearest training slice are the same picture
        fake = grid[2 + row * cell : (row + 1) * cell, 2 : cell]
        train = grid[2 + row * cell : (row + 1) * cell, 2 + cell : 2 * cell]
        assert np.array_equal(fake, train)
    assert not list(tmp_path.glob("*.tmp"))


def fidelity_of_fakes(sets: dict, run_dir: Path, num_fakes: int | None = None, **options: int) -> dict:
    """fidelity_report of the first ``num_fakes`` fakes (all by default) against the fixture's train and val sets."""
    return fidelity_report(
        fake_images=sets["fake"][:num_fakes],
        fake_features=sets["fake_features"][:num_fakes],
        real_features=sets["train_features"],
        train_images=sets["train"],
        train_features=sets["train_features"],
        val_images=sets["val"],
        val_features=sets["val_features"],
        run_dir=run_dir,
        **options,
    )


def test_fidelity_report_gives_flat_keys_in_range(sets: dict, tmp_path: Path) -> None:
    report = fidelity_of_fakes(sets, tmp_path, num_pairs=50)
    for key in ("precision", "recall", "diversity_ms_ssim", "diversity_ms_ssim_real",
                "diversity_feature_cosine", "diversity_feature_cosine_real"):
        assert 0.0 <= report[key] <= 1.0, key
    assert report["memorisation_pixel_fraction_closer_than_val"] == pytest.approx(3 / 13)
    assert (tmp_path / CLOSEST_PAIRS_FILE).is_file()
    assert report["memorisation_closest_pairs"] == CLOSEST_PAIRS_FILE
    assert all(isinstance(value, float) for key, value in report.items() if key != "memorisation_closest_pairs")


def test_without_validation_slices_the_baseline_is_none(sets: dict) -> None:
    report = memorisation_report(
        sets["fake"], sets["train"], sets["val"][:0], sets["fake_features"], sets["train_features"],
        sets["val_features"][:0],
    )
    assert report["memorisation_pixel_fraction_closer_than_val"] is None
    assert report["memorisation_feature_val_to_train_min"] is None
    assert report["memorisation_pixel_fake_to_train_min"] < 1e-6


def test_fidelity_report_leaves_out_precision_recall_with_too_few_images(sets: dict, tmp_path: Path) -> None:
    report = fidelity_of_fakes(sets, tmp_path, num_fakes=3)
    assert report["precision"] is None and report["recall"] is None
    assert report["memorisation_pixel_fraction_closer_than_val"] == 1.0  # all three are planted copies


def test_fidelity_report_searches_the_fakes_nearest_training_slices_once(
    sets: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pixel search over every training slice is the costliest step after Inception: run it once."""
    searched = []
    search = memorisation.nearest_training_slices

    def counted(images: torch.Tensor, train_images: torch.Tensor, device: str = "cpu") -> tuple:
        searched.append(len(images))
        return search(images, train_images, device)

    monkeypatch.setattr(fidelity, "nearest_training_slices", counted)
    monkeypatch.setattr(memorisation, "nearest_training_slices", counted)
    fidelity_of_fakes(sets, tmp_path)
    assert sorted(searched) == sorted([len(sets["fake"]), len(sets["val"])])
