"""FID: pytorch-fid's formula, the Inception path as pytorch-fid's CLI sees PNGs, and the weights."""

from __future__ import annotations

import hashlib
import logging
import re
import subprocess
import sys
from pathlib import Path
from typing import Iterator
from urllib.error import URLError

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from PIL import Image
from pytorch_fid.fid_score import calculate_frechet_distance, get_activations
from torch import Tensor, nn
from torchvision.utils import save_image

from liver_gan.data.dataset import PreparedDataset, SliceSet
from liver_gan.data.labels import HEALTHY, TUMOR
from liver_gan.data.schema import Subset
from liver_gan.errors import LiverGanError
from liver_gan.images import image_files, read_image_folder, to_uint8, write_png_folder
from liver_gan.metrics import evaluate
from liver_gan.metrics.context import select_real_images
from liver_gan.metrics.evaluate import evaluate_generator, generated_count, matching_labels
from liver_gan.metrics.fid import feature_statistics, frechet_distance
from liver_gan.metrics.inception import (
    FID_WEIGHTS_NAME,
    FeatureExtractor,
    FIDWeightsUnavailable,
    load_feature_extractor,
    load_inception,
)
from liver_gan.metrics.kid import kernel_inception_distance
from liver_gan.metrics.schema import EvalConfig, FIDConfig, KIDConfig, RealPool
from liver_gan.models.mlp import build_mlp_gan
from allocations import LargestAllocation


def blobs(n: int, resolution: int = 32, seed: int = 0) -> Tensor:
    """CT-like test images in [-1, 1]: one bright Gaussian blob of random place and size, plus noise."""
    rng = torch.Generator().manual_seed(seed)
    axis = torch.linspace(-1, 1, resolution)
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    centre = torch.rand(n, 2, 1, 1, generator=rng) * 1.2 - 0.6
    width = torch.rand(n, 1, 1, generator=rng) * 0.3 + 0.2
    blob = torch.exp(-((xx - centre[:, 0]) ** 2 + (yy - centre[:, 1]) ** 2) / (2 * width**2))
    noise = 0.05 * torch.randn(n, 1, resolution, resolution, generator=rng)
    return (blob.unsqueeze(1) * 1.6 - 0.8 + noise).clamp(-1, 1)


def slice_set(images: Tensor, labels: list[int]) -> SliceSet:
    return SliceSet(images, torch.tensor(labels), torch.zeros(len(labels), dtype=torch.int64))


def two_class_dataset(num_train: int = 24, num_val: int = 8) -> PreparedDataset:
    """Three healthy slices to one tumor slice, as blobs at 32 x 32."""
    labels = lambda n: [TUMOR if index % 4 == 0 else HEALTHY for index in range(n)]  # noqa: E731
    train = slice_set(blobs(num_train, seed=1), labels(num_train))
    val = slice_set(blobs(num_val, seed=2), labels(num_val))
    return PreparedDataset("test-dataset", 32, Subset.all, train, val, {})


def eval_config(
    tmp_path: Path, num_samples: int, max_real: int, save_images: bool = False, **options: object
) -> DictConfig:
    """eval.* of a small evaluation; ``options`` set further EvalConfig fields (e.g. metrics=[...])."""
    return OmegaConf.structured(
        EvalConfig(
            num_samples=num_samples,
            max_real=max_real,
            fid=FIDConfig(save_images=save_images),
            kid=KIDConfig(num_subsets=5, subset_size=num_samples),
            cache_dir=str(tmp_path / "reference_stats"),
            **options,
        )
    )


class PooledPixels(nn.Module):
    """A cheap stand-in for Inception: 4 x 4 mean-pooled pixels, in pytorch-fid's output format."""

    def forward(self, x: Tensor) -> list[Tensor]:
        return [F.adaptive_avg_pool2d(x[:, :1], 4).flatten(1)[:, :, None, None]]


def tiny_generator(conditional: bool) -> nn.Module:
    generator, _ = build_mlp_gan(8, conditional, [16], [16], resolution=32, num_classes=2 if conditional else 0)
    return generator


# --- pytorch-fid's formula on features -------------------------------------------------------


def test_frechet_distance_is_zero_for_the_same_features_and_grows_with_the_shift() -> None:
    features = np.random.default_rng(0).normal(size=(500, 8))
    distances = [frechet_distance(features, features + shift) for shift in (0.0, 0.5, 1.0)]
    # A pure shift keeps the covariance, so FID is the squared mean difference: 8 * shift².
    assert distances == pytest.approx([0.0, 2.0, 8.0], abs=1e-6)


@pytest.mark.filterwarnings("ignore:The `disp` argument is deprecated")  # inside pytorch-fid 0.3
@pytest.mark.parametrize(("num_a", "num_b"), [(20, 30), (30, 200), (300, 500)])
def test_frechet_distance_equals_pytorch_fid_formula(num_a: int, num_b: int) -> None:
    """Fewer images than dimensions (singular covariances), mixed, and more: always pytorch-fid's value."""
    rng = np.random.default_rng(1)
    mixing = rng.normal(size=(64, 64))
    features_a = np.abs(rng.normal(size=(num_a, 64)) @ mixing)
    features_b = np.abs(rng.normal(size=(num_b, 64)) @ mixing * 1.2 + 0.3)
    (mu_a, sigma_a), (mu_b, sigma_b) = feature_statistics(features_a), feature_statistics(features_b)

    expected = calculate_frechet_distance(mu_a, sigma_a, mu_b, sigma_b)

    assert frechet_distance(features_a, features_b) == pytest.approx(expected, rel=1e-6)


def test_fid_needs_two_images_per_set() -> None:
    with pytest.raises(LiverGanError, match="at least 2 images"):
        feature_statistics(np.zeros((1, 8)))


# --- what reaches Inception --------------------------------------------------------------------


def test_saved_pngs_hold_exactly_the_levels_inception_sees(tmp_path: Path) -> None:
    images = blobs(5) * 1.3  # partly outside [-1, 1]: clipped the same way on both paths
    write_png_folder(images, tmp_path / "pngs")
    assert Image.open(tmp_path / "pngs" / "00000.png").mode == "L"
    pixels = read_image_folder(tmp_path / "pngs")
    assert pixels.shape == (5, 3, 32, 32)
    assert torch.equal(pixels, to_uint8(images).expand(-1, 3, -1, -1))


def test_quantisation_rounds_to_the_nearest_8_bit_level() -> None:
    levels = to_uint8(torch.tensor([-1.0, -2.0, 1.0, 3.0, 0.0, 2 * 100.4 / 255 - 1, 2 * 100.6 / 255 - 1]))
    assert levels.tolist() == [0, 0, 255, 255, 128, 100, 101]


def test_quantisation_is_torchvision_save_image_also_at_half_levels(tmp_path: Path) -> None:
    """The PNG of a sample grid (save_image) and of a sample folder hold the same levels, also for
    values exactly halfway between two levels, which round up (round() would go to the even one)."""
    halfway = torch.tensor([-1 + (2 * level + 1) / 255 for level in range(255)])
    halfway = halfway[halfway.add(1).div(2).mul(255).remainder(1) == 0.5]
    assert len(halfway) > 10
    images = torch.cat([halfway, torch.linspace(-1.2, 1.2, 4096)]).reshape(1, 1, 1, -1)
    save_image(images, tmp_path / "grid.png", normalize=True, value_range=(-1, 1))
    saved = torch.from_numpy(np.array(Image.open(tmp_path / "grid.png")))[..., 0]
    assert torch.equal(to_uint8(images)[0, 0], saved)


def test_image_folders_of_mixed_sizes_are_refused(tmp_path: Path) -> None:
    write_png_folder(blobs(2, resolution=16), tmp_path / "mixed")
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(tmp_path / "mixed" / "small.png")
    with pytest.raises(LiverGanError, match="differ in size"):
        read_image_folder(tmp_path / "mixed")


# --- weights -------------------------------------------------------------------------------------


def test_a_missing_configured_weights_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(LiverGanError, match="eval.inception_weights=.*no such file"):
        load_feature_extractor(str(tmp_path / FID_WEIGHTS_NAME), "cpu")


def test_offline_without_weights_says_where_to_put_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))

    def offline(*args: object, **kwargs: object) -> None:
        raise URLError("network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(FIDWeightsUnavailable) as error:
        load_feature_extractor(None, "cpu")
    message = str(error.value)
    assert "\n" not in message
    assert str(tmp_path / "empty_torch_home" / "hub" / "checkpoints" / FID_WEIGHTS_NAME) in message
    assert "eval.inception_weights=PATH" in message


# --- real pool and generated labels ------------------------------------------------------------


def test_real_images_are_a_fixed_choice_of_the_configured_pool() -> None:
    dataset = two_class_dataset()
    both, _ = select_real_images(dataset, RealPool.both, max_real=100)
    assert torch.equal(both, torch.cat([dataset.train.images, dataset.val.images]))
    first, first_labels = select_real_images(dataset, RealPool.train, max_real=10)
    again, _ = select_real_images(dataset, RealPool.train, max_real=10)
    assert len(first) == 10 and torch.equal(first, again)
    assert not torch.equal(first, dataset.train.images[:10])  # a spread-out choice, not the first slices
    assert len(first_labels) == 10


def test_the_real_choice_copies_only_the_chosen_slices() -> None:
    """The same choice as concatenating the pool and indexing it, without the copy of the whole pool."""
    dataset = two_class_dataset(num_train=400, num_val=8)
    with LargestAllocation() as probe:
        images, labels = select_real_images(dataset, RealPool.both, max_real=10)
    pool = torch.cat([dataset.train.images, dataset.val.images])
    chosen = torch.randperm(len(pool), generator=torch.Generator().manual_seed(0))[:10].sort().values
    assert torch.equal(images, pool[chosen])
    assert torch.equal(labels, torch.cat([dataset.train.labels, dataset.val.labels])[chosen])
    assert probe.largest <= images.nbytes < dataset.train.images.nbytes / 10


def test_an_empty_real_pool_is_a_clear_error() -> None:
    dataset = two_class_dataset()
    empty_val = PreparedDataset(dataset.key, 32, Subset.all, dataset.train, slice_set(blobs(0), []), {})
    with pytest.raises(LiverGanError, match="real_pool=val"):
        select_real_images(empty_val, RealPool.val, max_real=10)


def test_generated_classes_follow_the_real_proportions() -> None:
    real_labels = torch.tensor([HEALTHY] * 6 + [TUMOR] * 2)
    labels = matching_labels(10, real_labels, num_classes=2)
    assert labels.tolist() == [HEALTHY] * 8 + [TUMOR] * 2  # 7.5 and 2.5: the tie goes to the first class
    assert torch.bincount(matching_labels(7, real_labels, 2)).tolist() == [5, 2]


def test_conditional_evaluation_reports_each_class_from_the_same_features(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    extractor = FeatureExtractor(PooledPixels(), "pooled.pth", "0" * 64, torch.device("cpu"))
    monkeypatch.setattr(evaluate, "load_feature_extractor", lambda weights, device: extractor)
    cfg = eval_config(tmp_path, num_samples=16, max_real=24)
    with caplog.at_level(logging.INFO):
        metrics = evaluate_generator(tiny_generator(conditional=True), two_class_dataset(), cfg, tmp_path, "cpu", 0)
    # All 24 reals of the pool: a note on the small N, not a warning about a setting.
    assert [record.levelno for record in caplog.records if "FID is biased at small N" in record.message] == [logging.INFO]
    assert metrics["num_real"] == 24 and metrics["num_fake"] == 16 and metrics["real_pool"] == "train"
    assert metrics["feature_extractor"] == {"weights": "pooled.pth", "sha256": "0" * 64}
    assert {name: (row["num_real"], row["num_fake"]) for name, row in metrics["per_class"].items()} == {
        "healthy": (18, 12),
        "tumor": (6, 4),
    }
    for row in [metrics, *metrics["per_class"].values()]:
        assert row["fid"] > 0 and np.isfinite(row["kid_mean"])


def test_the_small_n_note_is_a_warning_where_max_real_left_reals_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    extractor = FeatureExtractor(PooledPixels(), "pooled.pth", "0" * 64, torch.device("cpu"))
    monkeypatch.setattr(evaluate, "load_feature_extractor", lambda weights, device: extractor)
    with caplog.at_level(logging.INFO):
        evaluate_generator(tiny_generator(False), two_class_dataset(), eval_config(tmp_path, 8, 8), tmp_path, "cpu", 0)
    assert [record.levelno for record in caplog.records if "FID is biased at small N" in record.message] == [
        logging.WARNING
    ]


def test_unconditional_evaluation_has_no_per_class_scores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    extractor = FeatureExtractor(PooledPixels(), "pooled.pth", "0" * 64, torch.device("cpu"))
    monkeypatch.setattr(evaluate, "load_feature_extractor", lambda weights, device: extractor)
    metrics = evaluate_generator(tiny_generator(False), two_class_dataset(), eval_config(tmp_path, 8, 8), tmp_path, "cpu", 0)
    assert {"fid", "kid_mean", "kid_std", "num_real", "num_fake", "real_pool", "feature_extractor"} <= set(metrics)
    assert "per_class" not in metrics


def float32_settings() -> tuple:
    """Each backend's float32 precision (PyTorch >= 2.9's API) and whether autocast is on."""
    backends = (
        torch.backends.cuda.matmul, torch.backends.cudnn.conv, torch.backends.mkldnn.matmul, torch.backends.mkldnn.conv
    )
    return (*(backend.fp32_precision for backend in backends), torch.is_autocast_enabled("cpu"))


class PrecisionProbe(PooledPixels):
    """PooledPixels that records the input dtype and the arithmetic settings of each forward pass."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple] = []

    def forward(self, x: Tensor) -> list[Tensor]:
        self.seen.append((x.dtype, *float32_settings()))
        return super().forward(x)


@pytest.fixture
def tf32_allowed() -> Iterator[None]:
    """The settings of a training script that turned TF32 on the usual way; put back after the test."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.mark.skipif(not hasattr(torch.backends, "fp32_precision"), reason="reads PyTorch >= 2.9's precision API")
def test_inception_runs_in_full_float32_and_restores_the_settings(tf32_allowed: None) -> None:
    """IEEE float32 on cuBLAS, cuDNN and oneDNN, no autocast; the caller's settings come back unchanged."""
    probe = PrecisionProbe()
    extractor = FeatureExtractor(probe, "probe.pth", "0" * 64, torch.device("cpu"))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        before = float32_settings()
        features = extractor.features(blobs(4), batch_size=2)
        after = float32_settings()
    assert features.dtype == np.float32
    assert probe.seen == [(torch.float32, "ieee", "ieee", "ieee", "ieee", False)] * 2
    assert before == after == ("tf32", "tf32", "none", "none", True)
    assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32


# --- the real Inception network ------------------------------------------------------------------


@pytest.mark.slow
def test_inception_fid_of_a_set_against_itself_is_zero_and_grows_with_the_shift(fid_weights: Path) -> None:
    extractor = load_feature_extractor(str(fid_weights), "cpu")  # the eval.inception_weights=PATH route
    assert extractor.weights_name == FID_WEIGHTS_NAME
    assert extractor.weights_sha256 == hashlib.sha256(fid_weights.read_bytes()).hexdigest()
    images = blobs(24)
    features = [extractor.features((images + shift).clamp(-1, 1), batch_size=50) for shift in (0.0, 0.2, 0.6)]
    assert features[0].shape == (24, 2048) and features[0].dtype == np.float32
    rebatched = extractor.features(images, batch_size=7)  # the same set again, batched differently
    assert np.allclose(rebatched, features[0], rtol=1e-4, atol=1e-5)
    same, small, large = (frechet_distance(features[0], f) for f in (rebatched, *features[1:]))
    assert abs(same) < 0.01
    assert 1.0 < small < large
    kid_same, _ = kernel_inception_distance(features[0], features[0], 5, 24, seed=0)
    kid_large, _ = kernel_inception_distance(features[0], features[2], 5, 24, seed=0)
    assert abs(kid_same) < 0.02 < kid_large


@pytest.mark.slow
def test_the_fast_inception_path_gives_pytorch_fids_fid_within_a_thousandth(fid_weights: Path, tmp_path: Path) -> None:
    """BatchNorm folded into the convolutions and the channels-last layout change float rounding only:
    on the same PNGs, liver-gan's features give the FID that pytorch-fid's own model and file reader
    (its CLI's path) give, within 0.1%."""
    real, fake = tmp_path / "real", tmp_path / "fake"
    write_png_folder(blobs(10, resolution=64), real)
    write_png_folder((blobs(10, resolution=64, seed=1) + 0.3).clamp(-1, 1), fake)
    model = load_inception(str(fid_weights)).eval()
    theirs = [
        get_activations([str(file) for file in image_files(folder)], model, 50, 2048, "cpu", num_workers=0)
        for folder in (real, fake)
    ]
    extractor = load_feature_extractor(str(fid_weights), "cpu")
    ours = [extractor.pixel_features(read_image_folder(folder), batch_size=50) for folder in (real, fake)]
    assert frechet_distance(*theirs) > 1.0
    assert frechet_distance(*ours) == pytest.approx(frechet_distance(*theirs), rel=1e-3)


def test_the_default_sample_count_follows_the_real_pool() -> None:
    """eval.num_samples=null: twice the reals compared, at most 2048; a number given is kept."""
    assert [generated_count(None, num_real) for num_real in (161, 1024, 5000)] == [322, 2048, 2048]
    assert generated_count(100, 161) == 100


@pytest.mark.slow
def test_saved_fid_images_reproduce_the_reported_fid_with_pytorch_fid_cli(fid_weights: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    cfg = eval_config(tmp_path, num_samples=24, max_real=24, save_images=True)
    metrics = evaluate_generator(tiny_generator(False), two_class_dataset(), cfg, run_dir, "cpu", seed=0)
    real, fake = run_dir / "fid_images" / "real", run_dir / "fid_images" / "fake"
    assert len(list(real.glob("*.png"))) == metrics["num_real"] == 24
    assert len(list(fake.glob("*.png"))) == metrics["num_fake"] == 24
    # The session fixture's TORCH_HOME (os.environ) gives the subprocess the same offline weights.
    command = [sys.executable, "-m", "pytorch_fid", "--device", "cpu", "--num-workers", "0", str(real), str(fake)]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    cli_fid = float(re.search(r"FID:\s+(\S+)", result.stdout).group(1))
    assert cli_fid == pytest.approx(metrics["fid"], rel=0.01)


@pytest.mark.slow
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: compares FID on the GPU with the CPU's")
def test_fid_on_cuda_equals_the_cpu_within_a_thousandth(fid_weights: Path) -> None:
    images, shifted = blobs(32), (blobs(32, seed=1) + 0.3).clamp(-1, 1)
    fids = []
    for device in ("cpu", "cuda"):
        extractor = load_feature_extractor(str(fid_weights), device)
        fids.append(frechet_distance(extractor.features(images, 16), extractor.features(shifted, 16)))
    assert fids[1] == pytest.approx(fids[0], rel=1e-3)
