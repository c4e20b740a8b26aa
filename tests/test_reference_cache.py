"""Cached real-image statistics: a second evaluation runs no Inception pass over the reals."""

from __future__ import annotations

import json
import logging
import multiprocessing
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import Tensor

from liver_gan.metrics import evaluate
from liver_gan.metrics.evaluate import evaluate_generator
from liver_gan.metrics.fid import feature_statistics
from liver_gan.metrics.inception import FEATURE_PRECISION, FeatureExtractor
from liver_gan.metrics.reference import ReferenceKey, pixels_sha256, reference_statistics
from liver_gan.metrics.slice_features import STORE_DIR, cached_slice_features, preprocessing_key
from test_fid import PooledPixels, eval_config, tiny_generator, two_class_dataset


class CountingExtractor(FeatureExtractor):
    """The real extractor class over a cheap network, recording how many images each pass sees."""

    def __init__(self) -> None:
        super().__init__(PooledPixels(), "pooled.pth", "0" * 64, torch.device("cpu"))
        self.passes: list[int] = []

    def pixel_features(self, pixels: Tensor, batch_size: int, what: str = "images") -> np.ndarray:
        self.passes.append(len(pixels))
        return super().pixel_features(pixels, batch_size, what)


def reference_key(**changes: object) -> ReferenceKey:
    fields = dict(
        dataset_key="abc",
        subset="all",
        real_pool="train",
        num_images=3,
        resolution=32,
        weights_sha256="0" * 64,
        pixels_sha256="1" * 64,
        device_type="cpu",
        precision="float32",
    )
    return ReferenceKey(**{**fields, **changes})


def test_second_evaluation_hits_the_cache_without_an_inception_pass_over_the_reals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    extractor = CountingExtractor()
    monkeypatch.setattr(evaluate, "load_feature_extractor", lambda weights, device: extractor)
    dataset, generator, cfg = two_class_dataset(), tiny_generator(conditional=True), eval_config(tmp_path, 8, 24)
    with caplog.at_level(logging.INFO, logger="liver_gan.metrics.reference"):
        first = evaluate_generator(generator, dataset, cfg, tmp_path, "cpu", seed=0)
        # The fakes, then (on first use) the FID reals and the validation reals of the memorisation baseline.
        assert extractor.passes == [8, 24, len(dataset.val)]
        assert "cache miss" in caplog.text
        extractor.passes.clear()
        second = evaluate_generator(generator, dataset, cfg, tmp_path, "cpu", seed=0)
    assert extractor.passes == [8]  # only the fakes
    assert "cache hit" in caplog.text
    assert second == first


def test_entries_are_keyed_by_the_device_and_arithmetic_inception_ran_with(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    extractor = CountingExtractor()
    monkeypatch.setattr(evaluate, "load_feature_extractor", lambda weights, device: extractor)
    cfg = eval_config(tmp_path, 8, 8, metrics=["fid"])
    evaluate_generator(tiny_generator(False), two_class_dataset(), cfg, tmp_path, "cpu", seed=0)
    (entry,) = [path for path in (tmp_path / "reference_stats").iterdir() if path.is_dir() and path.name != STORE_DIR]
    key = json.loads((entry / "key.json").read_text())
    assert (key["device_type"], key["precision"]) == ("cpu", FEATURE_PRECISION)


def test_entry_holds_float32_features_and_their_statistics(tmp_path: Path) -> None:
    features = np.random.default_rng(0).normal(size=(3, 5))
    reference = reference_statistics(reference_key(), tmp_path, lambda: features)
    reloaded = reference_statistics(reference_key(), tmp_path, lambda: pytest.fail("cache missed"))
    entry = tmp_path / reference_key().digest()
    assert np.load(entry / "features.npy").dtype == np.float32
    assert json.loads((entry / "key.json").read_text())["pixels_sha256"] == "1" * 64
    expected_mu, expected_sigma = feature_statistics(features.astype(np.float32))
    for result in (reference, reloaded):
        assert np.array_equal(result.features, features.astype(np.float32))
        assert np.allclose(result.statistics[0], expected_mu) and np.allclose(result.statistics[1], expected_sigma)


@pytest.mark.parametrize(
    "change",
    [
        {"weights_sha256": "2" * 64},
        {"pixels_sha256": "3" * 64},
        {"num_images": 4},
        {"device_type": "cuda"},  # GPU kernels round differently: CPU reals never meet GPU fakes
        {"precision": "tf32"},
    ],
)
def test_anything_that_changes_the_reals_or_the_network_misses(tmp_path: Path, change: dict) -> None:
    reference_statistics(reference_key(), tmp_path, lambda: np.zeros((3, 5)))
    computed = []
    reference_statistics(reference_key(**change), tmp_path, lambda: computed.append(1) or np.ones((3, 5)))
    assert computed == [1]


@pytest.mark.parametrize("damage", ["truncated", "missing", "wrong shape"])
def test_a_damaged_entry_is_computed_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    features = np.random.default_rng(0).normal(size=(3, 5))
    reference_statistics(reference_key(), tmp_path, lambda: features)
    sigma = tmp_path / reference_key().digest() / "sigma.npy"
    if damage == "truncated":  # e.g. a disk that filled up while another tool wrote there
        sigma.write_bytes(sigma.read_bytes()[:100])
    elif damage == "missing":
        sigma.unlink()
    else:
        np.save(sigma, np.zeros((4, 4)))

    computed = []
    with caplog.at_level(logging.WARNING, logger="liver_gan.atomic"):
        again = reference_statistics(reference_key(), tmp_path, lambda: computed.append(1) or features)

    assert computed == [1]
    assert f"{sigma.parent} is incomplete or damaged: building it again" in caplog.text
    assert np.allclose(again.statistics[1], feature_statistics(features.astype(np.float32))[1])


def test_pixel_hash_sees_the_8_bit_levels_only() -> None:
    images = torch.linspace(-1, 1, 64).reshape(1, 1, 8, 8)
    assert pixels_sha256(images) == pixels_sha256(images + 1e-4)  # same PNG levels
    assert pixels_sha256(images) != pixels_sha256(images.flip(-1))


def _build_entry(cache_dir: Path, marker_dir: Path, job: int) -> None:
    def compute() -> np.ndarray:
        (marker_dir / f"computed-by-{job}").touch()
        time.sleep(0.5)  # hold the lock long enough for the other job to wait on it
        return np.full((3, 5), job, dtype=np.float32)

    reference_statistics(reference_key(), cache_dir, compute)


def test_concurrent_jobs_compute_an_entry_once(tmp_path: Path) -> None:
    markers = tmp_path / "markers"
    markers.mkdir()
    context = multiprocessing.get_context("fork")
    jobs = [context.Process(target=_build_entry, args=(tmp_path / "cache", markers, job)) for job in range(2)]
    for job in jobs:
        job.start()
    for job in jobs:
        job.join(timeout=60)
    assert [job.exitcode for job in jobs] == [0, 0]
    assert len(list(markers.iterdir())) == 1


# --- features per real slice: a new set of the same slices runs no Inception pass over them -------


def counted_evaluation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cache: Path, **options: object
) -> tuple[dict, list[int]]:
    """One FID evaluation of the two-class blobs with eval.cache_dir=cache, and the batch sizes the
    Inception stand-in's forward calls saw."""
    extractor = CountingExtractor()
    forwards: list[int] = []
    extractor.model.register_forward_hook(lambda module, inputs, output: forwards.append(len(inputs[0])))
    monkeypatch.setattr(evaluate, "load_feature_extractor", lambda weights, device: extractor)
    cfg = eval_config(tmp_path, 8, **{"max_real": 24, "metrics": ["fid"], **options})
    cfg.cache_dir = str(cache)
    torch.manual_seed(0)  # the same generator every time
    metrics = evaluate_generator(tiny_generator(False), two_class_dataset(), cfg, tmp_path, "cpu", seed=0)
    return metrics, forwards


@pytest.mark.parametrize(
    "second",
    [{"max_real": 12}, {"real_pool": "val"}, {"real_pool": "both"}],
    ids=["a subset", "another pool", "both pools"],
)
def test_a_new_set_of_already_embedded_slices_runs_no_inception_pass_over_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, second: dict
) -> None:
    cache = tmp_path / "reference_stats"
    for pool in ("train", "val"):  # every real slice embedded once, as two reference entries
        counted_evaluation(tmp_path, monkeypatch, cache, real_pool=pool)
    metrics, forwards = counted_evaluation(tmp_path, monkeypatch, cache, **second)
    assert sum(forwards) == 8  # the generated images only: a new reference entry, no real slice embedded
    fresh, fresh_forwards = counted_evaluation(tmp_path, monkeypatch, tmp_path / "fresh", **second)
    assert sum(fresh_forwards) == 8 + metrics["num_real"]
    assert metrics == fresh  # the stored features are the ones a fresh pass computes


def test_a_damaged_slice_feature_shard_is_refused_and_its_slices_embedded_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    cache = tmp_path / "reference_stats"
    first, _ = counted_evaluation(tmp_path, monkeypatch, cache)
    (store,) = (cache / STORE_DIR).iterdir()
    (shard,) = [path for path in store.iterdir() if path.is_dir()]
    features = shard / "features.npy"
    data = bytearray(features.read_bytes())
    data[-1] ^= 0xFF  # one flipped bit pattern in the last feature: the file still loads
    features.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING):
        second, forwards = counted_evaluation(tmp_path, monkeypatch, cache, max_real=12)
    assert f"slice features {shard} are damaged" in caplog.text
    assert sum(forwards) == 8 + 12  # the damaged shard's slices embedded again, not read
    assert second["fid"] == counted_evaluation(tmp_path, monkeypatch, tmp_path / "fresh", max_real=12)[0]["fid"]


def test_slice_features_are_keyed_by_the_weights_and_the_device(tmp_path: Path) -> None:
    extractor = CountingExtractor()
    images = two_class_dataset().train.images
    cached_slice_features(images, extractor, 8, tmp_path, "real slices")
    other = CountingExtractor()
    other.weights_sha256 = "9" * 64
    cached_slice_features(images, other, 8, tmp_path, "real slices")
    assert other.passes == [len(images)]
    on_gpu = CountingExtractor()
    on_gpu.device = torch.device("cuda")
    assert preprocessing_key(on_gpu).digest() != preprocessing_key(extractor).digest()
