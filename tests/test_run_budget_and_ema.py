"""The loop's shared run features (issue 14): ``trainer.max_minutes`` ends a run early, which then
samples, checkpoints and evaluates as any run does; ``trainer.ema_kimg`` keeps an EMA copy of the
generator that draws the sample grids, is evaluated, goes into the checkpoint beside the trained
copy and is what the tools that open a run load."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from omegaconf import DictConfig
from test_fid import PooledPixels
from tiny_gan import tiny_phantom_overrides

from liver_gan.errors import LiverGanError
from liver_gan.metrics import registry
from liver_gan.metrics.inception import FeatureExtractor
from liver_gan.runs import load_generator
from liver_gan.training import loop
from liver_gan.training.checkpoint import EMA_KEY, load_checkpoint
from liver_gan.training.loop import train

Compose = Callable[..., DictConfig]
TRAINER = [
    "trainer.device=cpu",
    "trainer.batch_size=4",
    "trainer.epochs=2",
    "trainer.max_steps=null",
    "trainer.log_every=2",
    "trainer.checkpoint_every=1",
    "trainer.num_fixed_samples=4",
    "eval.enabled=false",
]
FID_ONLY = ["eval.enabled=true", "eval.metrics=[fid]", "eval.num_samples=8", "eval.max_real=8"]


@pytest.fixture
def train_config(compose_config: Compose, data_dir: Path) -> Compose:
    base = [*tiny_phantom_overrides(data_dir), f"eval.cache_dir={data_dir / 'reference'}", *TRAINER]
    return lambda *overrides: compose_config([*base, *overrides], hydra=False)


@pytest.fixture
def pixel_fid(monkeypatch: pytest.MonkeyPatch) -> None:
    """FID on pooled pixels instead of Inception features, and no other metric: an evaluation in a blink."""
    extractor = FeatureExtractor(PooledPixels(), "pooled.pth", "0" * 64, torch.device("cpu"))
    monkeypatch.setattr("liver_gan.metrics.evaluate.load_feature_extractor", lambda weights, device: extractor)
    for name, metric in list(registry._METRICS.items()):
        if name != "fid":
            monkeypatch.setitem(registry._METRICS, name, dataclasses.replace(metric, compute=None))


@pytest.mark.usefixtures("pixel_fid")
def test_max_minutes_stops_training_and_the_run_still_evaluates(
    train_config: Compose, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A budget far below one step's time stops the run after its first step, whatever the machine."""
    with caplog.at_level(logging.INFO):
        metrics = train(train_config(*FID_ONLY, "trainer.max_minutes=1e-9"), tmp_path)
    assert (metrics["status"], metrics["stop_reason"], metrics["steps"]) == ("completed", "max_minutes", 1)
    assert metrics["fid"] > 0 and metrics["num_fake"] == 8
    assert json.loads((tmp_path / "metrics.json").read_text())["stop_reason"] == "max_minutes"
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["step"] == 1
    assert (tmp_path / "samples" / "step_0000001.png").is_file()
    assert "trainer.max_minutes=1e-09: stopped after" in caplog.text
    assert "of training; stopped by trainer.max_minutes)" in caplog.text


@pytest.mark.parametrize(("overrides", "reason"), [([], "epochs"), (["trainer.max_steps=3"], "max_steps")])
def test_stop_reason_names_what_ended_training(
    train_config: Compose, tmp_path: Path, overrides: list[str], reason: str
) -> None:
    metrics = train(train_config(*overrides, "trainer.max_minutes=60"), tmp_path)
    assert metrics["stop_reason"] == reason


@pytest.mark.parametrize("option", ["trainer.max_minutes=0", "trainer.ema_kimg=-1"])
def test_bad_budget_or_half_life_fails_in_one_line(train_config: Compose, tmp_path: Path, option: str) -> None:
    with pytest.raises(LiverGanError, match=option.split("=")[0]) as refused:
        train(train_config(option), tmp_path)
    assert "\n" not in str(refused.value)


def same_weights(module: torch.nn.Module, state: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(tensor, state[name]) for name, tensor in module.state_dict().items())


@pytest.mark.usefixtures("pixel_fid")
def test_the_ema_copy_draws_the_grids_is_evaluated_and_is_what_tools_load(
    train_config: Compose, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    used: dict[str, list[torch.nn.Module]] = {"samples": [], "evaluation": []}
    real_write, real_evaluate = loop.write_samples, loop.evaluate_generator

    def write_samples(board: Any, generator: torch.nn.Module, *args: Any) -> None:
        used["samples"].append(generator)
        real_write(board, generator, *args)

    def evaluate_generator(generator: torch.nn.Module, *args: Any) -> dict[str, Any]:
        used["evaluation"].append(generator)
        return real_evaluate(generator, *args)

    monkeypatch.setattr(loop, "write_samples", write_samples)
    monkeypatch.setattr(loop, "evaluate_generator", evaluate_generator)
    # A half-life of 8 images: after a few steps of 4 the copy clearly trails the generator.
    train(train_config(*FID_ONLY, "trainer.max_steps=3", "trainer.ema_kimg=0.008"), tmp_path)

    last = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert not same_weights_dicts(last["generator"], last[EMA_KEY])
    final_sampler, evaluated = used["samples"][-1], used["evaluation"][0]
    assert final_sampler is evaluated and not evaluated.training
    assert same_weights(evaluated, last[EMA_KEY])
    loaded, _ = load_generator(tmp_path, torch.device("cpu"))
    assert same_weights(loaded, last[EMA_KEY])


def same_weights_dicts(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> bool:
    return first.keys() == second.keys() and all(torch.equal(first[name], second[name]) for name in first)


def test_without_ema_the_tools_load_the_trained_generator(train_config: Compose, tmp_path: Path) -> None:
    train(train_config("trainer.max_steps=2"), tmp_path)
    last = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert EMA_KEY not in last
    loaded, _ = load_generator(tmp_path, torch.device("cpu"))
    assert same_weights(loaded, last["generator"])
