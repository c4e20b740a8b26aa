"""trainer.resume: a killed run, or one stopped by trainer.max_steps mid-epoch, continues from its
last checkpoint to exactly the weights, optimizer states and logged losses of an uninterrupted
run (deterministic mode, CPU); and a checkpoint of another model is refused."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import torch
from omegaconf import DictConfig
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import liver_gan.training.gan_step as gan_step
from liver_gan.errors import LiverGanError
from liver_gan.training.checkpoint import EMA_KEY, load_checkpoint
from liver_gan.training.loop import train

Compose = Callable[..., DictConfig]
LOGGED = ("loss/D", "loss/G", "D(x)", "D(G(z))")
EPOCHS = 3
KILLED_AT_CALL = 8  # mid-epoch 2 (6 or fewer steps per epoch), after epoch 1's checkpoint


class Killed(Exception):
    """Stands in for the process being killed mid-step."""


TRAINER = [
    "loss=wgan_gp",  # its penalty draws random interpolation weights every step
    "trainer.device=cpu",
    "trainer.deterministic=true",
    "trainer.batch_size=4",
    f"trainer.epochs={EPOCHS}",
    "trainer.max_steps=null",
    "trainer.log_every=4",  # so that checkpoints hold a partly summed log window
    "trainer.checkpoint_every=1",
    "trainer.sample_every=1",
    "trainer.resume=auto",
    "eval.enabled=false",
]


@pytest.fixture(scope="module")
def train_config(compose_config: Compose, tiny_phantom: list[str]) -> Compose:
    return lambda *overrides: compose_config([*tiny_phantom, *TRAINER, *overrides], hydra=False)


def logged_losses(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    events = EventAccumulator(str(run_dir / "tb" / run_dir.name), size_guidance={"scalars": 0}).Reload()
    return {tag: [(event.step, event.value) for event in events.Scalars(tag)] for tag in LOGGED}


def assert_same_state(resumed: dict[str, Any], reference: dict[str, Any]) -> None:
    for network in ("generator", "discriminator"):
        for name, tensor in reference[network].items():
            assert torch.equal(resumed[network][name], tensor), f"{network}.{name}"
    for optimizer in ("optimizer_g", "optimizer_d"):
        for index, state in reference[optimizer]["state"].items():
            for name, value in state.items():
                assert torch.equal(resumed[optimizer]["state"][index][name], value), f"{optimizer}.{index}.{name}"
    assert (resumed["step"], resumed["epoch"]) == (reference["step"], reference["epoch"])
    assert torch.equal(resumed["rng"]["torch"], reference["rng"]["torch"])
    assert torch.equal(resumed["rng"]["batch_order"], reference["rng"]["batch_order"])


@pytest.fixture(scope="module", autouse=True)
def restore_determinism() -> Iterator[None]:
    """Deterministic mode is process-wide: hand the default back to the tests after these."""
    yield
    torch.use_deterministic_algorithms(False)


@pytest.fixture(scope="module")
def uninterrupted(train_config: Compose, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference run; trainer.resume=auto in an empty run dir starts afresh."""
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    train(train_config(), run_dir)
    return run_dir


def kill_at_call(monkeypatch: pytest.MonkeyPatch, call: int) -> None:
    real_step: Callable[..., torch.Tensor] = gan_step.train_step
    calls = iter(range(1, 10**6))

    def step(*args: Any) -> torch.Tensor:
        if next(calls) == call:
            raise Killed
        return real_step(*args)

    monkeypatch.setattr(gan_step, "train_step", step)


def test_a_killed_run_resumes_to_the_uninterrupted_result(
    train_config: Compose, uninterrupted: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with monkeypatch.context() as patch:
        kill_at_call(patch, KILLED_AT_CALL)
        with pytest.raises(Killed):
            train(train_config(), tmp_path)
    killed_at = load_checkpoint(tmp_path / "checkpoints" / "last.pt")["step"]
    assert 0 < killed_at < KILLED_AT_CALL
    # TensorBoard names event files by the second: the resumed run's file must sort after the killed one's.
    time.sleep(1.1)
    metrics = train(train_config(), tmp_path)

    reference = load_checkpoint(uninterrupted / "checkpoints" / "last.pt")
    assert metrics["steps"] == reference["step"]
    assert_same_state(load_checkpoint(tmp_path / "checkpoints" / "last.pt"), reference)
    assert logged_losses(tmp_path) == logged_losses(uninterrupted)


def test_a_killed_run_with_an_ema_copy_resumes_exactly(
    train_config: Compose, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both copies of the generator are checkpointed and restored: the resumed EMA copy is the
    uninterrupted run's, bit for bit."""
    ema = "trainer.ema_kimg=0.01"
    train(train_config(ema), tmp_path / "uninterrupted")
    with monkeypatch.context() as patch:
        kill_at_call(patch, KILLED_AT_CALL)
        with pytest.raises(Killed):
            train(train_config(ema), tmp_path / "killed")
    time.sleep(1.1)
    train(train_config(ema), tmp_path / "killed")

    reference = load_checkpoint(tmp_path / "uninterrupted" / "checkpoints" / "last.pt")
    resumed = load_checkpoint(tmp_path / "killed" / "checkpoints" / "last.pt")
    assert_same_state(resumed, reference)
    assert not all(torch.equal(reference[EMA_KEY][name], tensor) for name, tensor in reference["generator"].items())
    for name, tensor in reference[EMA_KEY].items():
        assert torch.equal(resumed[EMA_KEY][name], tensor), f"generator_ema.{name}"


def test_a_killed_run_with_ada_lazy_r1_and_an_ema_copy_resumes_exactly(
    train_config: Compose, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ADA's p and its running sums, the D step count that places lazy R1 and the EMA copy (with
    its ramp-up) all come back from the checkpoint: the resumed run ends bit for bit where the
    uninterrupted one does, p included."""
    options = [
        "loss=nonsaturating",
        "loss.gradient_penalty=1",
        "loss.r1_interval=4",
        "augment=ada",
        "augment.ada_kimg=0.01",  # p moves by a whole batch's worth of 0.4 per adjustment
        "augment.adjust_every=1",
        "trainer.ema_kimg=0.01",
        "trainer.ema_rampup=0.05",
    ]
    train(train_config(*options), tmp_path / "uninterrupted")
    with monkeypatch.context() as patch:
        kill_at_call(patch, KILLED_AT_CALL)
        with pytest.raises(Killed):
            train(train_config(*options), tmp_path / "killed")
    time.sleep(1.1)
    train(train_config(*options), tmp_path / "killed")

    reference = load_checkpoint(tmp_path / "uninterrupted" / "checkpoints" / "last.pt")
    resumed = load_checkpoint(tmp_path / "killed" / "checkpoints" / "last.pt")
    assert_same_state(resumed, reference)
    for name, tensor in reference[EMA_KEY].items():
        assert torch.equal(resumed[EMA_KEY][name], tensor), f"generator_ema.{name}"
    ada, resumed_ada = reference["family_state"]["augment"], resumed["family_state"]["augment"]
    assert ada["p"] > 0, "D overfits a handful of slices: ADA must have raised p"
    assert torch.equal(resumed_ada["p"], ada["p"]) and torch.equal(resumed_ada["sign_sum"], ada["sign_sum"])
    assert resumed["family_state"]["d_steps"] == reference["family_state"]["d_steps"] == reference["step"]


def test_resume_refuses_another_augmentation(train_config: Compose, uninterrupted: Path, tmp_path: Path) -> None:
    with pytest.raises(LiverGanError, match="augment"):
        train(train_config("augment=ada", f"trainer.resume={uninterrupted / 'checkpoints' / 'last.pt'}"), tmp_path)


def test_a_run_capped_mid_epoch_continues_where_it_stopped(
    train_config: Compose, uninterrupted: Path, tmp_path: Path
) -> None:
    train(train_config("trainer.max_steps=7"), tmp_path)
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["step"] == 7
    time.sleep(1.1)
    train(train_config(), tmp_path)

    reference = load_checkpoint(uninterrupted / "checkpoints" / "last.pt")
    assert_same_state(load_checkpoint(tmp_path / "checkpoints" / "last.pt"), reference)
    # The capped run logged its last step (7, off the log_every=4 cadence) and kept its window, so
    # the continued curves are the uninterrupted run's plus that one point.
    resumed, reference_losses = logged_losses(tmp_path), logged_losses(uninterrupted)
    assert all(7 in [step for step, _ in points] for points in resumed.values())
    assert {tag: [(step, value) for step, value in points if step != 7] for tag, points in resumed.items()} == reference_losses


def test_resume_from_a_file_refuses_another_model(train_config: Compose, uninterrupted: Path, tmp_path: Path) -> None:
    checkpoint = uninterrupted / "checkpoints" / "epoch_0001.pt"
    cfg = train_config(f"trainer.resume={checkpoint}", "model.generator_widths=[16]")
    with pytest.raises(LiverGanError, match="resume with the same model"):
        train(cfg, tmp_path)


def test_resume_refuses_to_turn_the_ema_copy_on(train_config: Compose, uninterrupted: Path, tmp_path: Path) -> None:
    """A checkpoint without an EMA copy cannot continue one exactly."""
    cfg = train_config(f"trainer.resume={uninterrupted / 'checkpoints' / 'last.pt'}", "trainer.ema_kimg=10")
    with pytest.raises(LiverGanError, match="resume with the same trainer.ema_kimg"):
        train(cfg, tmp_path)
