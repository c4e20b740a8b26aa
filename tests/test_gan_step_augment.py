"""The GAN step with D's augmentation (issue 14): D sees augmented real and fake batches, G learns
through the augmentation, ADA's p reaches TensorBoard and the checkpoint, and options that would
be silently ignored fail at once."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest
import torch
from omegaconf import DictConfig
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import Tensor

from liver_gan.augment import Augment
from liver_gan.augment_schema import AugmentOp
from liver_gan.errors import LiverGanError
from liver_gan.training.checkpoint import load_checkpoint
from liver_gan.training.gan_step import build_training
from liver_gan.training.loop import train

Compose = Callable[..., DictConfig]
TRAINER = [
    "trainer.device=cpu",
    "trainer.batch_size=4",
    "trainer.epochs=1",
    "trainer.max_steps=4",
    "trainer.log_every=2",
    "trainer.num_fixed_samples=4",
    "eval.enabled=false",
]


class RecordingAugment(Augment):
    """DiffAugment's ops, recording what D's inputs went through."""

    def __init__(self) -> None:
        super().__init__(ops=["translation", "cutout", "intensity"])
        self.pairs: list[tuple[Tensor, Tensor]] = []
        self.singles: list[Tensor] = []

    def pair(self, real: Tensor, fake: Tensor) -> tuple[Tensor, Tensor]:
        self.pairs.append((real, fake))
        return super().pair(real, fake)

    def __call__(self, images: Tensor) -> Tensor:
        self.singles.append(images)
        return super().__call__(images)


@pytest.fixture
def train_config(compose_config: Compose, tiny_phantom: list[str]) -> Compose:
    return lambda *overrides: compose_config([*tiny_phantom, *TRAINER, *overrides], hydra=False)


def test_d_sees_augmented_real_and_fake_and_g_learns_through_the_augmentation(train_config: Compose) -> None:
    torch.manual_seed(0)
    gan = build_training(train_config("loss=nonsaturating", "loss.gradient_penalty=0"), torch.device("cpu"))
    gan.augment = RecordingAugment()
    real = torch.rand(4, 1, 32, 32) * 2 - 1  # the tiny phantom's MLP makes 32x32 slices
    before = [parameter.detach().clone() for parameter in gan.generator.parameters()]
    gan.step(real, None, torch.autocast("cpu", enabled=False))
    assert len(gan.augment.pairs) == 1 and torch.equal(gan.augment.pairs[0][0], real)
    assert len(gan.augment.singles) == 1, "the G step augments its fake batch once"
    assert gan.augment.singles[0].requires_grad, "G's fakes reach D through the augmentation, in G's graph"
    assert any(not torch.equal(old, new) for old, new in zip(before, gan.generator.parameters()))
    assert gan.d_steps == 1


def test_augment_none_leaves_d_steps_unaugmented(train_config: Compose) -> None:
    gan = build_training(train_config("augment=none"), torch.device("cpu"))
    assert type(gan.augment) is Augment and not gan.augment.ops


def test_a_gan_trains_with_diffaugment_unless_told_otherwise(train_config: Compose) -> None:
    gan = build_training(train_config(), torch.device("cpu"))
    diffaugment = {AugmentOp.translation, AugmentOp.cutout, AugmentOp.intensity}
    assert type(gan.augment) is Augment and gan.augment.ops == diffaugment


def test_ada_p_is_logged_and_checkpointed(train_config: Compose, tmp_path: Path) -> None:
    train(train_config("augment=ada", "augment.ada_kimg=0.01", "augment.adjust_every=1"), tmp_path)
    events = EventAccumulator(str(tmp_path / "tb" / tmp_path.name), size_guidance={"scalars": 0}).Reload()
    logged = [event.value for event in events.Scalars("augment/p")]
    saved = load_checkpoint(tmp_path / "checkpoints" / "last.pt")["family_state"]["augment"]["p"]
    assert len(logged) == 2 and logged[-1] == pytest.approx(float(saved))
    assert "augment/overfitting" in events.Tags()["scalars"]


@pytest.mark.parametrize(
    "overrides, option",
    [
        (["loss=hinge", "loss.r1_interval=16"], "loss.r1_interval"),
        (["loss=nonsaturating", "loss.gradient_penalty=0", "loss.r1_interval=16"], "loss.r1_interval"),
        (["loss=nonsaturating", "loss.gradient_penalty=1", "loss.r1_interval=0"], "loss.r1_interval"),
        (["model=ddpm", "augment=diffaugment"], "augment"),
        (["trainer.ema_kimg=10", "trainer.ema_rampup=0"], "trainer.ema_rampup"),
    ],
)
def test_options_that_would_be_ignored_fail_before_the_dataset_build(
    compose_config: Compose, tmp_path: Path, overrides: list[str], option: str
) -> None:
    cfg = compose_config([*TRAINER, "dataset.root=/nonexistent", *overrides], hydra=False)
    with pytest.raises(LiverGanError, match=option.replace(".", r"\.")) as error:
        train(cfg, tmp_path)
    assert "\n" not in str(error.value)
