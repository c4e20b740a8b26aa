"""liver-gan-eval: a checkpoint against its rebuilt dataset, or two image folders; table + eval.json."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Callable
from urllib.error import URLError

import pytest
import torch
from omegaconf import DictConfig

from liver_gan.cli import evaluate as cli_evaluate
from liver_gan.cli.evaluate import main as eval_main
from liver_gan.images import write_png_folder
from liver_gan.metrics import evaluate
from liver_gan.metrics.inception import FID_WEIGHTS_NAME, FeatureExtractor
from test_fid import PooledPixels, blobs
from tiny_gan import save_tiny_checkpoint

SMALL_KID = ["eval.kid.num_subsets=3", "eval.kid.subset_size=8"]


def run_eval(monkeypatch: pytest.MonkeyPatch, run_dir: Path, *overrides: str) -> dict:
    monkeypatch.setattr(sys, "argv", ["liver-gan-eval", *overrides, f"hydra.run.dir={run_dir}", "device=cpu"])
    eval_main()
    return json.loads((run_dir / "eval.json").read_text())


@pytest.fixture
def pooled_pixels(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inception replaced by a cheap network: these tests are about the tool, not the features."""
    extractor = FeatureExtractor(PooledPixels(), "pooled.pth", "0" * 64, torch.device("cpu"))
    monkeypatch.setattr(evaluate, "load_feature_extractor", lambda weights, device: extractor)


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path]:
    write_png_folder(blobs(12, seed=1), tmp_path / "real")
    write_png_folder(blobs(10, seed=2).flip(-1), tmp_path / "fake")
    return tmp_path / "real", tmp_path / "fake"


def test_two_folders_give_a_table_and_eval_json(
    pooled_pixels: None, folders: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    real, fake = folders
    result = run_eval(monkeypatch, tmp_path / "eval", f"real={real}", f"fake={fake}", *SMALL_KID)
    assert result["num_real"] == 12 and result["num_fake"] == 10
    assert result["fid"] > 0 and result["kid_std"] >= 0
    assert result["real"] == str(real) and result["feature_extractor"]["weights"] == "pooled.pth"
    table = capsys.readouterr().out.splitlines()
    # Everything it measured, precision and recall included (issue 26: they were computed, not shown).
    for name, value in [("FID", result["fid"]), ("precision", result["precision"]), ("recall", result["recall"])]:
        assert f"  {name:<10} {value:.4g}" in table
    assert f"  KID        {result['kid_mean']:.4g} ± {result['kid_std']:.2g}" in table
    assert f"  measured on 10 images of {fake} and 12 of {real}" in table
    # Two folders allow the metrics that compare two sets of features; the rest need a training set.
    assert result["metrics"] == ["fid", "kid", "precision_recall", "density_coverage"] and 0 <= result["precision"] <= 1
    assert "diversity_ms_ssim" not in result and "memorisation_closest_pairs" not in result


def test_two_folders_with_only_training_set_metrics_exit_2_with_one_line(
    pooled_pixels: None, folders: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    real, fake = folders
    with pytest.raises(SystemExit) as exit_info:
        run_eval(monkeypatch, tmp_path / "eval", f"real={real}", f"fake={fake}", "eval.metrics=[memorisation]")
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "give checkpoint=RUN_DIR_OR_PT" in error


def test_a_validation_pool_without_validation_slices_exits_2_before_the_dataset_build(
    pooled_pixels: None,
    compose_config: Callable[..., DictConfig],
    tiny_phantom: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys,
) -> None:
    train_dir = save_tiny_checkpoint(
        compose_config, tmp_path / "train", tiny_phantom + ["dataset.val_fraction=0"]
    )

    def no_build(*args: object, **kwargs: object) -> None:
        raise AssertionError("the dataset build started before the eval options were checked")

    monkeypatch.setattr(cli_evaluate, "run_dataset", no_build)
    with pytest.raises(SystemExit) as exit_info:
        run_eval(monkeypatch, tmp_path / "eval", f"checkpoint={train_dir}", "eval.real_pool=val")
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "eval.real_pool=val but dataset.val_fraction=0" in error


def test_a_checkpoint_is_measured_against_its_rebuilt_dataset(
    pooled_pixels: None,
    compose_config: Callable[..., DictConfig],
    tiny_phantom: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    overrides = tiny_phantom + ["model.conditional=true", "dataset.subset=all"]
    train_dir = save_tiny_checkpoint(compose_config, tmp_path / "train", overrides)
    result = run_eval(
        monkeypatch,
        tmp_path / "eval",
        f"checkpoint={train_dir}",
        "eval.num_samples=16",
        "eval.real_pool=val",
        "eval.fid.save_images=true",
        f"eval.cache_dir={tmp_path / 'reference_stats'}",
        *SMALL_KID,
    )
    assert result["checkpoint"] == str(train_dir) and result["real_pool"] == "val"
    assert result["num_fake"] == 16 == sum(row["num_fake"] for row in result["per_class"].values())
    assert len(list((tmp_path / "eval" / "fid_images" / "real").glob("*.png"))) == result["num_real"]
    assert any(path.is_dir() for path in (tmp_path / "reference_stats").iterdir())
    table = capsys.readouterr().out
    for name, row in result["per_class"].items():  # each class's FID and image counts, in the table
        fid = "-" if row["fid"] is None else f"{row['fid']:.4g}"
        assert re.search(rf"^    {name}\s+{re.escape(fid)}\s.*\s{row['num_real']}\s+{row['num_fake']}$", table, re.M)


@pytest.mark.parametrize("overrides", [[], ["real=a"], ["checkpoint=x", "real=a", "fake=b"]])
def test_anything_but_one_mode_exits_2_with_one_line(
    overrides: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        run_eval(monkeypatch, tmp_path / "eval", *overrides)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "checkpoint=RUN_DIR_OR_PT" in error


def test_offline_without_weights_exits_2_saying_where_to_put_the_file(
    folders: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))

    def offline(*args: object, **kwargs: object) -> None:
        raise URLError("network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    real, fake = folders
    with pytest.raises(SystemExit) as exit_info:
        run_eval(monkeypatch, tmp_path / "eval", f"real={real}", f"fake={fake}")
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error
    assert str(tmp_path / "empty_torch_home" / "hub" / "checkpoints" / FID_WEIGHTS_NAME) in error
    assert "eval.inception_weights=PATH" in error
    assert not (tmp_path / "eval" / "eval.json").exists()


def test_a_checkpoint_is_evaluated_with_its_runs_time_budget(
    pooled_pixels: None,
    compose_config: Callable[..., DictConfig],
    tiny_phantom: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """trainer.max_minutes sizes the mask check's U-Net on a CPU, in liver-gan-eval as at the run's end."""
    train_dir = save_tiny_checkpoint(compose_config, tmp_path / "train", tiny_phantom + ["trainer.max_minutes=3"])
    budgets = []
    real_evaluate = cli_evaluate.evaluate_generator

    def evaluate_generator(*args: object, budget_minutes: float | None = None) -> dict:
        budgets.append(budget_minutes)
        return real_evaluate(*args, budget_minutes=budget_minutes)

    monkeypatch.setattr(cli_evaluate, "evaluate_generator", evaluate_generator)
    cache = f"eval.cache_dir={tmp_path / 'reference_stats'}"
    run_eval(monkeypatch, tmp_path / "eval", f"checkpoint={train_dir}", "eval.num_samples=8", cache, *SMALL_KID)
    assert budgets == [3.0]
