"""Metrics chosen by name (eval.metrics): only the selected ones run, each returns its declared keys,
a new one plugs in with register_metric, and liver-gan-train returns the configured optimized_metric."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from liver_gan.cli import train as train_cli
from liver_gan.data.dataset import PreparedDataset, SliceSet
from liver_gan.data.labels import TUMOR
from liver_gan.data.masks import MASK_CHANNELS, encode
from liver_gan.downstream.schema import SegmenterConfig
from liver_gan.errors import LiverGanError
from liver_gan.metrics import evaluate, registry
from liver_gan.metrics.context import EvaluationContext
from liver_gan.metrics.evaluate import evaluate_generator
from liver_gan.metrics.registry import check_optimized_metric, known_metrics, register_metric, selected_metrics
from liver_gan.models.mlp import build_mlp_gan
from test_fid import eval_config, tiny_generator, two_class_dataset
from test_reference_cache import CountingExtractor

ALL_METRICS = ["fid", "kid", "precision_recall", "density_coverage", "diversity", "memorisation", "masks"]
# What evaluate_generator reports whichever metrics run.
COMMON_KEYS = {"metrics", "num_real", "num_fake", "real_pool", "feature_extractor"}


@pytest.fixture
def extractor(monkeypatch: pytest.MonkeyPatch) -> CountingExtractor:
    counting = CountingExtractor()
    monkeypatch.setattr(evaluate, "load_feature_extractor", lambda weights, device: counting)
    return counting


def forbid_all_but(monkeypatch: pytest.MonkeyPatch, *allowed: str) -> None:
    """Every other registered metric fails the test if it is called."""

    def forbidden(context: EvaluationContext) -> dict[str, Any]:
        raise AssertionError("a metric that eval.metrics does not select was computed")

    for name, metric in list(registry._METRICS.items()):
        if name not in allowed:
            monkeypatch.setitem(registry._METRICS, name, dataclasses.replace(metric, compute=forbidden))


def test_the_default_selection_is_every_metric_in_order() -> None:
    assert eval_config(Path("."), 8, 8).metrics == ALL_METRICS == known_metrics()


def test_only_the_selected_metric_is_computed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extractor: CountingExtractor
) -> None:
    forbid_all_but(monkeypatch, "fid")
    dataset = two_class_dataset()
    cfg = eval_config(tmp_path, num_samples=8, max_real=24, metrics=["fid"])
    metrics = evaluate_generator(tiny_generator(conditional=True), dataset, cfg, tmp_path, "cpu", seed=0)
    fid_keys = {"fid", "fid_floor", "fid_over_floor", "floor_pools", "floor_counts"}  # FID beside its floor
    assert set(metrics) == COMMON_KEYS | fid_keys | {"per_class"} and metrics["metrics"] == ["fid"]
    assert [set(row) for row in metrics["per_class"].values()] == [{"fid", "num_real", "num_fake"}] * 2
    assert extractor.passes == [8, 24]  # the fakes and the FID reals; no validation reals
    assert not (tmp_path / "memorisation_closest_pairs.png").exists()


def with_masks(dataset: PreparedDataset) -> PreparedDataset:
    """The dataset's slices with mask channels: liver where a blob is bright, tumor in its middle on tumor slices."""

    def masked(slices: SliceSet) -> SliceSet:
        maps = (slices.images[:, 0] > 0).long()
        maps[slices.labels == TUMOR, 14:18, 14:18] = 2
        return dataclasses.replace(slices, images=torch.cat([slices.images, encode(maps)], dim=1))

    return dataclasses.replace(dataset, train=masked(dataset.train), val=masked(dataset.val))


def masked_generator() -> nn.Module:
    generator, _ = build_mlp_gan(8, True, [16], [16], resolution=32, num_classes=2, image_channels=1 + MASK_CHANNELS)
    return generator


TINY_SEGMENTER = SegmenterConfig(channels=[4, 8], strides=[2], epochs=1)


def test_every_metric_returns_exactly_its_declared_keys(tmp_path: Path, extractor: CountingExtractor) -> None:
    cfg = eval_config(tmp_path, num_samples=8, max_real=24, segmenter=TINY_SEGMENTER)
    dataset = with_masks(two_class_dataset())
    metrics = evaluate_generator(masked_generator(), dataset, cfg, tmp_path, "cpu", seed=0)
    declared = {key for metric in selected_metrics(ALL_METRICS) for key in metric.keys}
    assert set(metrics) == COMMON_KEYS | declared | {"per_class"}
    assert metrics["metrics"] == ALL_METRICS and metrics["num_fake"] == cfg.num_samples
    # FID's and KID's per-class rows are merged into one row per class.
    row_keys = {"fid", "kid_mean", "kid_std", "num_real", "num_fake"}
    assert [set(row) for row in metrics["per_class"].values()] == [row_keys] * 2


def test_the_mask_checks_are_left_out_for_slices_without_masks(tmp_path: Path, extractor: CountingExtractor) -> None:
    cfg = eval_config(tmp_path, num_samples=8, max_real=24)
    metrics = evaluate_generator(tiny_generator(conditional=True), two_class_dataset(), cfg, tmp_path, "cpu", seed=0)
    assert metrics["metrics"] == [name for name in ALL_METRICS if name != "masks"]
    assert not any(key.startswith("mask_") for key in metrics)


def test_metrics_run_in_the_listed_order_and_are_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extractor: CountingExtractor
) -> None:
    calls = []
    for name, metric in list(registry._METRICS.items()):
        traced = lambda context, name=name, compute=metric.compute: calls.append(name) or compute(context)  # noqa: E731
        monkeypatch.setitem(registry._METRICS, name, dataclasses.replace(metric, compute=traced))
    cfg = eval_config(tmp_path, num_samples=8, max_real=8, metrics=["kid", "fid"])
    metrics = evaluate_generator(tiny_generator(False), two_class_dataset(), cfg, tmp_path, "cpu", seed=0)
    assert calls == ["kid", "fid"] and metrics["metrics"] == ["kid", "fid"]


def test_a_new_metric_plugs_in_with_register_metric(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extractor: CountingExtractor
) -> None:
    monkeypatch.setattr(registry, "_METRICS", dict(registry._METRICS))

    @register_metric("mean_feature_gap", keys=("mean_feature_gap",))
    def mean_feature_gap(context: EvaluationContext) -> dict[str, Any]:
        gap = np.abs(context.real().features.mean(0) - context.fake_features.mean(0)).mean()
        return {"mean_feature_gap": float(gap)}

    cfg = eval_config(tmp_path, num_samples=8, max_real=8, metrics=["mean_feature_gap"])
    metrics = evaluate_generator(tiny_generator(False), two_class_dataset(), cfg, tmp_path, "cpu", seed=0)
    assert metrics["metrics"] == ["mean_feature_gap"] and metrics["mean_feature_gap"] > 0
    assert "fid" not in metrics


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["fid", "fdi"], "eval.metrics: unknown metric fdi; known metrics: " + ", ".join(ALL_METRICS)),
        ([], "eval.metrics is empty"),
        (["fid", "kid", "fid"], "names a metric twice"),
    ],
)
def test_a_bad_selection_is_one_line_naming_the_known_metrics(names: list[str], message: str) -> None:
    with pytest.raises(LiverGanError, match=message) as error:
        selected_metrics(names)
    assert "\n" not in str(error.value)


def test_the_optimized_metric_must_be_a_result_of_the_selection() -> None:
    check_optimized_metric("kid_mean", ["fid", "kid"])
    with pytest.raises(LiverGanError, match=r"optimized_metric=fid is not a result of eval.metrics=\[kid\]; "):
        check_optimized_metric("fid", ["kid"])


# --- liver-gan-train's return value ---------------------------------------------------------


def run_train_cli(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, metrics: dict, *overrides: str, started: list | None = None
) -> None:
    """liver-gan-train in-process, train() replaced by one returning ``metrics`` (its run dirs go to ``started``)."""

    def fake_train(cfg: Any, run_dir: Path, on_start: Any = None) -> dict:
        (started if started is not None else []).append(run_dir)
        return metrics

    monkeypatch.setattr(train_cli, "train", fake_train)
    monkeypatch.setattr(sys, "argv", ["liver-gan-train", *overrides])
    monkeypatch.chdir(tmp_path)
    train_cli.main()


def test_an_optuna_search_optimises_the_configured_metric(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Not the hard-coded FID: the trial's value is metrics[optimized_metric]."""
    search = ["hparams_search=optuna_fid", "hydra.sweeper.n_trials=1", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    metrics = {"fid": 5.0, "kid_mean": 0.25, "kid_std": 0.1}
    run_train_cli(monkeypatch, tmp_path, metrics, *search, "optimized_metric=kid_mean", "eval.metrics=[fid,kid]")
    results = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    assert results["best_value"] == 0.25


def test_the_search_preset_optimises_fid(compose_config: Any) -> None:
    assert compose_config(["hparams_search=optuna_fid"]).optimized_metric == "fid"


def test_an_objective_the_metrics_never_return_fails_before_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    overrides = ["optimized_metric=fid", "eval.metrics=[kid]", f"hydra.run.dir={tmp_path / 'run'}"]
    started: list[Path] = []
    with pytest.raises(SystemExit) as exit_info:
        run_train_cli(monkeypatch, tmp_path, {"kid_mean": 0.1}, *overrides, started=started)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "choose one of kid_mean, kid_std" in error
    assert started == []


def test_a_run_without_its_metric_scores_inf_in_a_sweep(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Evaluation off (or a diverged run): the metric is missing and the trial scores inf, as before."""
    search = ["hparams_search=optuna_fid", "hydra.sweeper.n_trials=1", f"hydra.sweep.dir={tmp_path / 'sweep'}"]
    run_train_cli(monkeypatch, tmp_path, {"fid": None}, *search, "eval.enabled=false")
    results = yaml.safe_load((tmp_path / "sweep" / "optimization_results.yaml").read_text())
    assert results["best_value"] == float("inf")

