"""The memorisation check flags generated samples that are copies of training slices."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from omegaconf import OmegaConf
from PIL import Image

from liver_gan.data.dataset import PreparedDataset
from liver_gan.data.schema import Subset
from liver_gan.errors import LiverGanError
from liver_gan.images import CAPTION_HEIGHT
from liver_gan.metrics import memorisation, registry
from liver_gan.metrics.context import EvaluationContext, RealImages
from liver_gan.metrics.inception import FID_WEIGHTS_NAME, FeatureExtractor, load_feature_extractor
from liver_gan.metrics.memorisation import (
    CLOSEST_PAIRS_FILE,
    memorisation_report,
    nearest_training_features,
    nearest_training_slices,
    pixel_vectors,
    reject_memorised,
    save_closest_pairs,
    validation_threshold,
)
from liver_gan.metrics.registry import compute_metrics, selected_metrics
from liver_gan.metrics.schema import EvalConfig, RealPool
from allocations import LargestAllocation
from test_fid import PooledPixels, blobs, slice_set

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


# --- the verdict: copies, not blur -----------------------------------------------------------


def blurred_mean(images: torch.Tensor, count: int) -> torch.Tensor:
    """What a collapsed generator draws: the training slices' mean, blurred, ``count`` times."""
    mean = images.mean(dim=0, keepdim=True)
    return torchvision.transforms.functional.gaussian_blur(mean, kernel_size=9, sigma=3.0).expand(count, -1, -1, -1)


@pytest.fixture(scope="module")
def blob_features(isolated_torch_home: Path) -> dict[str, tuple[torch.Tensor, np.ndarray]]:
    """CT-like blobs with their Inception features: 32 training and 16 validation slices, 16 noisy
    copies of training slices and 16 blurred means."""
    weights = isolated_torch_home / "hub" / "checkpoints" / FID_WEIGHTS_NAME
    if not weights.exists():
        pytest.skip(f"no offline copy of {FID_WEIGHTS_NAME} in $TORCH_HOME or ../shared/fid/")
    extractor = load_feature_extractor(str(weights), "cpu")
    train, val = blobs(32, seed=11), blobs(16, seed=12)
    noise = 0.02 * torch.randn(16, *train.shape[1:], generator=torch.Generator().manual_seed(13))
    images = {"train": train, "val": val, "copies": (train[:16] + noise).clamp(-1, 1), "blur": blurred_mean(train, 16)}
    return {name: (batch, extractor.features(batch, 80)) for name, batch in images.items()}


def verdict_of(fakes: str, splits: dict[str, tuple[torch.Tensor, np.ndarray]]) -> dict:
    (train, train_features), (val, val_features) = splits["train"], splits["val"]
    fake_images, fake_features = splits[fakes]
    return memorisation_report(fake_images, train, val, fake_features, train_features, val_features)


def test_training_slices_plus_noise_are_flagged_as_copies(blob_features: dict) -> None:
    report = verdict_of("copies", blob_features)
    assert report["memorisation_copying"] is True
    assert report["memorisation_feature_copy_z"] < memorisation.COPYING_Z
    assert report["memorisation_feature_closer_than_val_p"] < memorisation.COPYING_P


def test_a_blurred_mean_image_is_not_flagged(blob_features: dict) -> None:
    report = verdict_of("blur", blob_features)
    assert report["memorisation_copying"] is False
    assert report["memorisation_feature_copy_z"] > 0  # farther from the training set than unseen slices
    assert report["memorisation_feature_fraction_closer_than_val"] == 0.0


def test_copies_among_novel_samples_are_flagged_by_their_count() -> None:
    """150 of 1050 fakes at distance 0 move Z_U too little, but so many fakes closer than every one
    of 64 validation slices is past chance; the same fakes without the copies are not flagged."""
    rng = np.random.default_rng(0)
    val_to_train = torch.from_numpy(rng.uniform(1, 2, size=64))
    novel = torch.from_numpy(rng.uniform(1, 2, size=900))
    copied = torch.cat([torch.zeros(150, dtype=torch.float64), novel])
    with_copies = memorisation.copying_verdict(copied, val_to_train)
    without = memorisation.copying_verdict(novel, val_to_train)
    assert with_copies["memorisation_feature_copy_z"] > memorisation.COPYING_Z
    assert with_copies["memorisation_copying"] is True
    assert without["memorisation_copying"] is False
    assert without["memorisation_feature_closer_than_val_p"] > 0.01


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
    row_height = cell + 2 + CAPTION_HEIGHT  # one pair, framed, and its distance written beneath
    assert grid.shape == (4 * row_height, 2 * cell + 2)
    for row in range(3):  # the three copies: fake and nearest training slice are the same picture
        top = row * row_height
        fake = grid[top + 2 : top + cell, 2:cell]
        train = grid[top + 2 : top + cell, 2 + cell : 2 * cell]
        assert np.array_equal(fake, train)
    captions = [grid[row * row_height + cell + 2 : (row + 1) * row_height] for row in range(4)]
    assert all((caption < 128).any() for caption in captions)  # text on every caption line
    assert not np.array_equal(captions[0], captions[3])  # a copy's distance (0.0000) reads unlike another's
    assert not list(tmp_path.glob("*.tmp"))


FIDELITY = ["precision_recall", "diversity", "memorisation"]


def fidelity_of_fakes(sets: dict, run_dir: Path, num_fakes: int | None = None, metrics: list[str] = FIDELITY) -> dict:
    """Precision/recall, diversity and memorisation (or ``metrics``) of the first ``num_fakes`` fakes (all by
    default) against the fixture's train and val sets, whose features are given rather than computed."""
    train, val = slice_set(sets["train"], [0] * len(sets["train"])), slice_set(sets["val"], [0] * len(sets["val"]))
    reals = {
        RealPool.train: RealImages(len(train), lambda: sets["train_features"], train.images, train.labels),
        RealPool.val: RealImages(len(val), lambda: sets["val_features"], val.images, val.labels),
    }
    context = EvaluationContext(
        options=OmegaConf.structured(EvalConfig()),
        extractor=FeatureExtractor(PooledPixels(), "pooled.pth", "0" * 64, torch.device("cpu")),
        fake_features=sets["fake_features"][:num_fakes],
        device=torch.device("cpu"),
        seed=0,
        run_dir=run_dir,
        fake_images=sets["fake"][:num_fakes],
        dataset=PreparedDataset("planted", RESOLUTION, Subset.tumor, train, val, {}),
        reals=reals,
    )
    return compute_metrics(selected_metrics(metrics), context)


def test_fidelity_metrics_give_flat_keys_in_range(sets: dict, tmp_path: Path) -> None:
    report = fidelity_of_fakes(sets, tmp_path)
    for key in ("precision", "recall", "diversity_ms_ssim", "diversity_ms_ssim_real",
                "diversity_feature_cosine", "diversity_feature_cosine_real"):
        assert 0.0 <= report[key] <= 1.0, key
    assert report["memorisation_pixel_fraction_closer_than_val"] == pytest.approx(3 / 13)
    assert (tmp_path / CLOSEST_PAIRS_FILE).is_file()
    assert report["memorisation_closest_pairs"] == CLOSEST_PAIRS_FILE
    flat = {key: value for key, value in report.items() if key not in ("memorisation_closest_pairs", "memorisation_copying")}
    assert all(isinstance(value, float) for value in flat.values())
    assert isinstance(report["memorisation_copying"], bool)


def test_without_validation_slices_the_baseline_is_none(sets: dict) -> None:
    report = memorisation_report(
        sets["fake"], sets["train"], sets["val"][:0], sets["fake_features"], sets["train_features"],
        sets["val_features"][:0],
    )
    assert report["memorisation_pixel_fraction_closer_than_val"] is None
    assert report["memorisation_feature_val_to_train_min"] is None
    assert report["memorisation_copying"] is None and report["memorisation_feature_copy_z"] is None
    assert report["memorisation_pixel_fake_to_train_min"] < 1e-6


def test_precision_recall_is_left_out_with_too_few_images(sets: dict, tmp_path: Path) -> None:
    report = fidelity_of_fakes(sets, tmp_path, num_fakes=3)
    assert report["precision"] is None and report["recall"] is None
    assert report["memorisation_pixel_fraction_closer_than_val"] == 1.0  # all three are planted copies


def test_memorisation_searches_the_fakes_nearest_training_slices_once(
    sets: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pixel search over every training slice is the costliest step after Inception: run it once."""
    searched = []
    search = memorisation.nearest_training_slices

    def counted(images: torch.Tensor, train_images: torch.Tensor, device: str = "cpu") -> tuple:
        searched.append(len(images))
        return search(images, train_images, device)

    monkeypatch.setattr(registry, "nearest_training_slices", counted)
    monkeypatch.setattr(memorisation, "nearest_training_slices", counted)
    fidelity_of_fakes(sets, tmp_path)
    assert sorted(searched) == sorted([len(sets["fake"]), len(sets["val"])])


# --- bounded memory: chunks of both sides, compact input dtypes ----------------------------------


def one_search(queries: torch.Tensor, references: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The formula before chunking: every row in float64 at once, one distance matrix."""
    nearest = torch.cdist(queries, references).min(dim=1)
    return nearest.values, nearest.indices


def test_the_chunked_search_equals_one_search_over_everything(sets: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    """Same neighbours; distances equal up to float64 rounding (cdist's matrix-product path, which the
    one big search took and small chunks do not, leaves about 1e-7 where the exact value is 0)."""
    # 3 rows per chunk of pixels, 48 per chunk of 64-d features: many chunks on both sides.
    monkeypatch.setattr(memorisation, "CHUNK_BYTES", 3 * 8 * RESOLUTION**2)
    fakes = torch.cat([sets["fake"], sets["val"]])
    distances, indices = nearest_training_slices(fakes, sets["train"])
    expected_distances, expected_indices = one_search(pixel_vectors(fakes), pixel_vectors(sets["train"]))
    assert torch.equal(indices, expected_indices) and indices[:3].tolist() == PLANTED
    assert torch.allclose(distances, expected_distances, rtol=0, atol=1e-6)
    features = np.concatenate([sets["fake_features"], sets["val_features"]])
    expected_features, _ = one_search(torch.from_numpy(features), torch.from_numpy(sets["train_features"]))
    found = nearest_training_features(features, sets["train_features"])
    assert torch.allclose(found, expected_features, rtol=0, atol=1e-6)


def test_the_search_holds_chunks_never_the_training_set_in_float64(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 17: the whole training set used to be cast to float64 (9 GB at 19k slices of 256 x 256)."""
    train, fakes = _images(400, seed=3), _images(8, seed=4)
    monkeypatch.setattr(memorisation, "CHUNK_BYTES", 64 * 2**10)
    with LargestAllocation() as probe:
        nearest_training_slices(fakes, train)
    assert train.nbytes >= 20 * memorisation.CHUNK_BYTES
    assert 0 < probe.largest <= memorisation.CHUNK_BYTES


def test_the_memorisation_metric_holds_chunks_never_the_training_set(
    sets: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = {**sets, "train": torch.cat([sets["train"], _images(360, seed=5)])}
    big["train_features"] = np.concatenate([sets["train_features"], _features(360, seed=5)])
    monkeypatch.setattr(memorisation, "CHUNK_BYTES", 64 * 2**10)
    with LargestAllocation() as probe:
        report = fidelity_of_fakes(big, tmp_path, metrics=["memorisation"])
    assert report["memorisation_pixel_fraction_closer_than_val"] == pytest.approx(3 / 13)
    assert probe.largest < big["train"].nbytes / 4


def test_compact_training_sets_are_searched_as_their_float_values(sets: dict) -> None:
    """float16 training slices (a compact cache) give the distances of the same values in float32."""
    compact = sets["train"].half()
    distances, indices = nearest_training_slices(sets["fake"], compact)
    expected = nearest_training_slices(sets["fake"], compact.float())
    assert torch.equal(distances, expected[0]) and torch.equal(indices, expected[1])
    assert indices[:3].tolist() == PLANTED


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: compares the search on the GPU with the CPU's")
def test_the_search_on_cuda_equals_the_cpu(sets: dict) -> None:
    fakes = torch.cat([sets["fake"], sets["val"]])
    on_cpu = nearest_training_slices(fakes, sets["train"])
    on_gpu = nearest_training_slices(fakes, sets["train"], "cuda")
    assert torch.equal(on_gpu[1], on_cpu[1])
    assert torch.allclose(on_gpu[0], on_cpu[0], rtol=1e-10, atol=1e-12)
