"""The real-vs-real floor beside FID and KID: which reals it compares, that it costs no second
Inception pass over real slices, where it is reported, and that a generator of real slices scores
about its floor while a constant image scores far above it."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from liver_gan.data.dataset import prepare_dataset
from liver_gan.images import write_png_folder
from liver_gan.metrics import evaluate, floor, registry
from liver_gan.metrics.evaluate import evaluate_folders, evaluate_generator
from liver_gan.metrics.fid import frechet_distance
from liver_gan.metrics.schema import RealPool
from liver_gan.metrics.summary import metric_lines
from liver_gan.sweeps.summary import collect_jobs, format_csv
from liver_gan.training.loop import train
from test_fid import blobs, eval_config, tiny_generator, two_class_dataset
from test_reference_cache import CountingExtractor
from test_summary import make_job
from test_train_run import hparams, read_events, tiny_run_overrides

Compose = Callable[..., DictConfig]
FLOOR_KEYS = {"fid_floor", "fid_over_floor", "kid_floor", "kid_floor_std", "floor_pools", "floor_counts"}


@pytest.fixture
def extractor(monkeypatch: pytest.MonkeyPatch) -> CountingExtractor:
    counting = CountingExtractor()
    monkeypatch.setattr(evaluate, "load_feature_extractor", lambda weights, device: counting)
    return counting


class RealSlices(nn.Module):
    """A "generator" whose samples are real slices, picked by the noise."""

    def __init__(self, slices: Tensor, latent_dim: int = 4) -> None:
        super().__init__()
        self.slices = slices
        self.latent_dim = latent_dim
        self.image_channels, self.resolution = slices.shape[1], slices.shape[-1]
        self.num_classes = 0

    def forward(self, noise: Tensor, labels: Tensor | None = None) -> Tensor:
        picks = (noise[:, 0].abs() * 1e6).long() % len(self.slices)
        return self.slices[picks]


def constant_like(slices: Tensor) -> RealSlices:
    return RealSlices(torch.zeros_like(slices[:1]))


def evaluate_fid_kid(dataset: Any, generator: nn.Module, tmp_path: Path, **options: Any) -> dict[str, Any]:
    """FID and KID with their floor; ``options`` set EvalConfig fields (metrics=[...] adds to fid and kid)."""
    num_samples, max_real = options.pop("num_samples", 8), options.pop("max_real", 24)
    metrics = ["fid", "kid", *options.pop("metrics", [])]
    cfg = eval_config(tmp_path, num_samples, max_real, metrics=metrics, **options)
    return evaluate_generator(generator, dataset, cfg, tmp_path, "cpu", seed=0)


def test_a_validation_split_of_half_the_reals_or_more_is_the_floor_against_the_comparison_reals(
    tmp_path: Path, extractor: CountingExtractor
) -> None:
    dataset = two_class_dataset(num_train=24, num_val=16)
    metrics = evaluate_fid_kid(dataset, tiny_generator(False), tmp_path, metrics=["memorisation"])
    assert FLOOR_KEYS <= set(metrics)
    # As many validation slices as generated images, against the same 24 reals the fakes met.
    assert metrics["floor_pools"] == "val vs train" and metrics["floor_counts"] == [8, 24]
    assert metrics["fid_floor"] > 0 and metrics["fid_over_floor"] == pytest.approx(metrics["fid"] / metrics["fid_floor"])
    assert metrics["kid_floor_std"] >= 0
    # Each real slice went through Inception once: the validation slices serve the floor's FID,
    # its KID and the memorisation baseline.
    assert extractor.passes == [8, 24, 16]


def test_without_a_metric_that_embeds_the_validation_split_the_floor_costs_no_inception_pass(
    tmp_path: Path, extractor: CountingExtractor
) -> None:
    metrics = evaluate_fid_kid(two_class_dataset(num_train=24, num_val=16), tiny_generator(False), tmp_path)
    assert metrics["floor_pools"] == "train halves" and metrics["floor_counts"] == [12, 12]
    assert extractor.passes == [8, 24]  # the fakes and the comparison reals only


def test_a_small_validation_split_gives_way_to_two_halves_of_the_comparison_reals(
    tmp_path: Path, extractor: CountingExtractor
) -> None:
    dataset = two_class_dataset(num_train=24, num_val=8)
    metrics = evaluate_fid_kid(dataset, tiny_generator(False), tmp_path, metrics=["memorisation"])
    assert metrics["floor_pools"] == "train halves" and metrics["floor_counts"] == [12, 12]


def test_the_floor_of_the_validation_pool_is_the_training_split(tmp_path: Path, extractor: CountingExtractor) -> None:
    dataset = two_class_dataset(num_train=24, num_val=16)
    to_val = {"real_pool": RealPool.val, "metrics": ["memorisation"]}
    metrics = evaluate_fid_kid(dataset, tiny_generator(False), tmp_path, max_real=16, **to_val)
    assert metrics["floor_pools"] == "train vs val" and metrics["floor_counts"] == [8, 16]
    to_both = {"real_pool": RealPool.both, "metrics": ["memorisation"]}
    both = evaluate_fid_kid(dataset, tiny_generator(False), tmp_path, max_real=40, **to_both)
    assert both["floor_pools"] == "both halves" and both["floor_counts"] == [20, 20]


def test_a_second_evaluation_computes_the_floor_from_the_cache_alone(
    tmp_path: Path, extractor: CountingExtractor
) -> None:
    dataset, generator = two_class_dataset(num_train=24, num_val=16), tiny_generator(False)
    first = evaluate_fid_kid(dataset, generator, tmp_path, metrics=["memorisation"])
    extractor.passes.clear()
    second = evaluate_fid_kid(dataset, generator, tmp_path, metrics=["memorisation"])
    assert extractor.passes == [8]  # only the fakes
    assert {key: second[key] for key in FLOOR_KEYS} == {key: first[key] for key in FLOOR_KEYS}


def test_a_run_of_snapshots_computes_its_floor_once(
    tmp_path: Path, extractor: CountingExtractor, monkeypatch: pytest.MonkeyPatch
) -> None:
    distances: list[int] = []

    def counted(features_a: Any, features_b: Any) -> float:
        distances.append(len(features_a))
        return frechet_distance(features_a, features_b)

    monkeypatch.setattr(registry, "frechet_distance", counted)
    monkeypatch.setattr(floor, "_FLOOR_VALUES", {})  # no floor from an earlier test
    dataset, generator = two_class_dataset(num_train=26, num_val=8), tiny_generator(False)
    first = evaluate_fid_kid(dataset, generator, tmp_path, max_real=26)
    assert distances == [26, 13]  # the fakes' FID, then the floor's
    distances.clear()
    torch.nn.init.normal_(next(generator.parameters()))  # the next snapshot: another generator state
    second = evaluate_fid_kid(dataset, generator, tmp_path, max_real=26)
    assert distances == [26]  # its FID only: the same reals give the same floor
    assert second["fid_floor"] == first["fid_floor"] and second["fid"] != first["fid"]


def test_two_folders_take_two_halves_of_the_real_folder(tmp_path: Path, extractor: CountingExtractor) -> None:
    write_png_folder(blobs(12, seed=1), tmp_path / "real")
    write_png_folder(blobs(10, seed=2), tmp_path / "fake")
    cfg = eval_config(tmp_path, 10, 12, metrics=["fid", "kid"])
    metrics = evaluate_folders(tmp_path / "real", tmp_path / "fake", cfg, "cpu", seed=0)
    assert metrics["floor_pools"] == "real halves" and metrics["floor_counts"] == [6, 6]
    assert extractor.passes == [10, 12]  # the fakes, then the reals: once each


def test_under_four_reals_the_floor_is_left_out(tmp_path: Path, extractor: CountingExtractor) -> None:
    metrics = evaluate_fid_kid(two_class_dataset(num_train=3, num_val=1), tiny_generator(False), tmp_path, max_real=3)
    assert metrics["fid"] > 0 and metrics["fid_floor"] is None and metrics["fid_over_floor"] is None
    assert metrics["kid_floor"] is None and metrics["floor_pools"] is None


@pytest.fixture(scope="module")
def phantom(compose_config: Compose, data_dir: Path) -> Any:
    cfg = compose_config([*tiny_run_overrides(data_dir), "dataset.subset=all"], hydra=False)
    return prepare_dataset(cfg.dataset, cfg.seed)


def test_real_slices_score_about_their_floor_and_a_constant_image_far_above(
    phantom: Any, tmp_path: Path, extractor: CountingExtractor
) -> None:
    """Held-out real slices as the "generator": FID about its floor; a constant image: far above."""
    counts = {"num_samples": 2 * len(phantom.train), "max_real": len(phantom.train)}
    real = evaluate_fid_kid(phantom, RealSlices(phantom.val.images), tmp_path, **counts)
    constant = evaluate_fid_kid(phantom, constant_like(phantom.val.images), tmp_path, **counts)
    assert real["fid_floor"] == constant["fid_floor"] > 0
    assert 0.5 < real["fid_over_floor"] < 2
    assert constant["fid_over_floor"] > 3


def test_the_floor_is_in_metrics_json_the_final_table_the_hparams_and_the_sweep_summary(
    compose_config: Compose, data_dir: Path, tmp_path: Path, extractor: CountingExtractor
) -> None:
    fid_kid = ["eval.enabled=true", "eval.metrics=[fid,kid]", "eval.num_samples=8", "eval.max_real=8"]
    cfg = compose_config([*tiny_run_overrides(data_dir), *fid_kid, "trainer.max_steps=1"], hydra=False)
    train(cfg, tmp_path)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert FLOOR_KEYS <= set(metrics) and metrics["fid_floor"] > 0
    table = metric_lines(metrics)
    stand_in, reference = metrics["floor_counts"]
    assert (
        f"  FID floor  {metrics['fid_floor']:.4g} ({metrics['floor_pools']}, {stand_in} and {reference} real slices); "
        f"FID / floor {metrics['fid_over_floor']:.3g}"
    ) in table
    assert f"  KID floor  {metrics['kid_floor']:.4g} ± {metrics['kid_floor_std']:.2g}" in table
    values = hparams(read_events(tmp_path))
    assert values["result.fid_floor"] == pytest.approx(metrics["fid_floor"])
    assert values["result.fid_over_floor"] == pytest.approx(metrics["fid_over_floor"])
    assert values["result.floor_pools"] == metrics["floor_pools"]
    make_job(tmp_path / "sweep", "0", ["seed=0"], metrics)
    [row] = csv.DictReader(io.StringIO(format_csv(collect_jobs(tmp_path / "sweep"))))
    for column in ("fid", "fid_floor", "fid_over_floor", "kid_floor"):
        assert float(row[column]) == pytest.approx(metrics[column])  # liver-gan-summary's columns
