"""The NaN guard: a non-finite loss stops the run with one line naming the step, keeps the last
good checkpoint (nothing non-finite is ever saved) and records the run as diverged.  The CLI task
then exits with status 2 in a single run, and scores the job inf in a multirun."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

import liver_gan.training.gan_step as gan_step
from liver_gan.cli.train import train_task
from liver_gan.training.checkpoint import load_checkpoint
from liver_gan.training.checks import TrainingDiverged
from liver_gan.training.loop import train

Compose = Callable[..., DictConfig]
NAN_FROM_STEP = 8  # in epoch 2 (6 or fewer steps per epoch), after epoch 1's checkpoint
TRAINER = [
    "trainer.device=cpu",
    "trainer.batch_size=4",
    "trainer.epochs=3",
    "trainer.max_steps=null",
    "trainer.checkpoint_every=1",
    "trainer.log_every=100",  # no log step: the epoch's end must catch it
    "eval.enabled=false",
]


DCGAN = ["model=dcgan", "model.generator_channels=4", "model.discriminator_channels=4"]


@pytest.fixture
def compose_run(compose_config: Compose, tiny_phantom: list[str]) -> Compose:
    """The composed config of a tiny run, Hydra's node included (the task function reads the run
    mode from it); a model=... override replaces the tiny MLP."""

    def compose_run_(*overrides: str) -> DictConfig:
        replaces_model = any(override.startswith("model=") for override in overrides)
        data = [override for override in tiny_phantom if not (replaces_model and override.startswith("model"))]
        return compose_config([*data, *TRAINER, *overrides])

    return compose_run_


def task_config(cfg: DictConfig) -> DictConfig:
    return OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"])


def steps_per_epoch(run_dir: Path) -> int:
    return load_checkpoint(run_dir / "checkpoints" / "epoch_0001.pt")["step"]


@pytest.fixture
def nan_loss(monkeypatch: pytest.MonkeyPatch) -> None:
    """G's loss turns NaN from step NAN_FROM_STEP on (and, through G's weights, D's too)."""
    real_loss = gan_step.generator_loss
    calls = itertools.count(1)

    def loss(*args: Any) -> torch.Tensor:
        value = real_loss(*args)
        return value * math.nan if next(calls) >= NAN_FROM_STEP else value

    monkeypatch.setattr(gan_step, "generator_loss", loss)


@pytest.fixture
def hydra_run() -> Iterator[None]:
    yield
    HydraConfig.instance().cfg = None


@pytest.mark.usefixtures("nan_loss")
def test_a_nan_loss_stops_the_run_and_keeps_the_last_checkpoint(compose_run: Compose, tmp_path: Path) -> None:
    with pytest.raises(TrainingDiverged) as diverged:
        train(task_config(compose_run()), tmp_path)
    epoch = steps_per_epoch(tmp_path)
    message = str(diverged.value)
    assert "\n" not in message
    assert f"training diverged by step {2 * epoch} (loss/D=nan, loss/G=nan" in message
    assert f"kept the last good checkpoint {tmp_path / 'checkpoints' / 'last.pt'}" in message
    assert "optimizer.lr" in message
    assert sorted(path.name for path in (tmp_path / "checkpoints").iterdir()) == ["epoch_0001.pt", "last.pt"]
    last = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert last["step"] == epoch
    assert all(tensor.isfinite().all() for tensor in last["generator"].values())
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert (metrics["status"], metrics["fid"], metrics["steps"]) == ("diverged", None, 2 * epoch)


@pytest.mark.usefixtures("nan_loss")
def test_a_log_step_catches_it_at_once(compose_run: Compose, tmp_path: Path) -> None:
    with pytest.raises(TrainingDiverged, match=f"diverged by step {NAN_FROM_STEP} "):
        train(task_config(compose_run("trainer.log_every=1")), tmp_path)


def first_weight(generator: torch.nn.Module) -> torch.Tensor:
    return next(generator.parameters()).data


def batchnorm_running_variance(generator: torch.nn.Module) -> torch.Tensor:
    return next(module for module in generator.modules() if isinstance(module, torch.nn.BatchNorm2d)).running_var


@pytest.mark.parametrize("model, corrupt", [([], first_weight), (DCGAN, batchnorm_running_variance)])
def test_non_finite_weights_are_never_checkpointed(
    compose_run: Compose,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    model: list[str],
    corrupt: Callable[[torch.nn.Module], torch.Tensor],
) -> None:
    """Even with finite losses, a checkpoint of infinite weights is refused.  BatchNorm's running
    variance is a buffer, not a parameter, and the losses (batch statistics in train mode) stay
    finite, so only the weight check can catch it."""
    real_step = gan_step.train_step
    calls = itertools.count(1)

    def step(gan: gan_step.GAN, *args: Any) -> torch.Tensor:
        values = real_step(gan, *args)
        if next(calls) == NAN_FROM_STEP:
            corrupt(gan.generator).fill_(math.inf)
        return values

    monkeypatch.setattr(gan_step, "train_step", step)
    with pytest.raises(TrainingDiverged, match=f"by step {NAN_FROM_STEP} \\(non-finite weights\\)"):
        train(task_config(compose_run(*model, f"trainer.max_steps={NAN_FROM_STEP}")), tmp_path)
    last = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert last["step"] < NAN_FROM_STEP
    assert all(tensor.isfinite().all() for tensor in last["generator"].values())
    assert not (tmp_path / "samples" / f"step_{NAN_FROM_STEP:07d}.png").exists()


@pytest.mark.usefixtures("nan_loss", "hydra_run")
def test_the_cli_exits_2_with_one_line_in_a_single_run(
    compose_run: Compose, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = compose_run("trainer.log_every=1")
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(tmp_path)
    HydraConfig.instance().set_config(cfg)
    with pytest.raises(SystemExit) as exit_info:
        train_task(task_config(cfg))
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.startswith(f"liver-gan: error: training diverged by step {NAN_FROM_STEP} ")


@pytest.mark.usefixtures("nan_loss", "hydra_run")
def test_a_multirun_job_scores_inf(compose_run: Compose, tmp_path: Path) -> None:
    cfg = compose_run("trainer.log_every=1", "hydra.mode=MULTIRUN")
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(tmp_path)
    HydraConfig.instance().set_config(cfg)
    assert train_task(task_config(cfg)) == math.inf
    assert json.loads((tmp_path / "metrics.json").read_text())["status"] == "diverged"
