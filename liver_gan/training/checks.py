"""The training run's refusals: trainer options that would fail (or do nothing) only after the
dataset build, and the NaN guard, which stops a run whose losses or weights are no longer finite
before it writes anything from them."""

from __future__ import annotations

import math

import torch
from omegaconf import DictConfig

from liver_gan.data.schema import Subset
from liver_gan.device import check_bf16_supported
from liver_gan.distributed import SINGLE_PROCESS, World, any_rank
from liver_gan.errors import LiverGanError
from liver_gan.training.run_state import RunState
from liver_gan.training.state import Progress


class TrainingDiverged(LiverGanError):
    """A loss became NaN or infinite; the message names the step and the last good checkpoint."""


def check_trainer_options(cfg: DictConfig, device: torch.device, world: World = SINGLE_PROCESS) -> None:
    """Refuse option values that would fail (or silently do nothing) only after the dataset build."""
    trainer = cfg.trainer
    for option in ("epochs", "batch_size", "log_every", "sample_every", "checkpoint_every", "num_fixed_samples"):
        if trainer[option] < 1:
            raise LiverGanError(f"trainer.{option}={trainer[option]} must be at least 1")
    if trainer.batch_size < world.size:
        raise LiverGanError(
            f"trainer.batch_size={trainer.batch_size} (the global batch) is smaller than the {world.size} ranks: "
            f"set it to at least {world.size}, or start fewer processes"
        )
    if trainer.tick_seconds < 0:
        raise LiverGanError(f"trainer.tick_seconds={trainer.tick_seconds} must be at least 0 (0: a line every step)")
    if trainer.max_steps is not None and trainer.max_steps < 1:
        raise LiverGanError(f"trainer.max_steps={trainer.max_steps} must be at least 1, or null for no cap")
    if trainer.max_minutes is not None and trainer.max_minutes <= 0:
        raise LiverGanError(f"trainer.max_minutes={trainer.max_minutes} must be positive, or null for no time budget")
    if trainer.ema_kimg is not None and trainer.ema_kimg <= 0:
        raise LiverGanError(f"trainer.ema_kimg={trainer.ema_kimg} must be positive (stylegan2-ada uses 10), or null for no EMA")
    if trainer.ema_rampup is not None and trainer.ema_rampup <= 0:
        raise LiverGanError(f"trainer.ema_rampup={trainer.ema_rampup} must be positive (stylegan2-ada uses 0.05), or null for none")
    if trainer.keep_last_n is not None and trainer.keep_last_n < 0:
        raise LiverGanError(f"trainer.keep_last_n={trainer.keep_last_n} must be at least 0, or null to keep every epoch checkpoint")
    if trainer.amp:
        check_bf16_supported(device)
    if cfg.model.conditional:
        if Subset(cfg.dataset.subset) is not Subset.all:
            raise LiverGanError(
                f"model.conditional=true learns both classes but dataset.subset={Subset(cfg.dataset.subset).value}; "
                "set dataset.subset=all"
            )
        if trainer.num_fixed_samples < 2:
            raise LiverGanError("trainer.num_fixed_samples must be at least 2 for a conditional model (one per class)")


def check_finite(means: dict[str, float], progress: Progress, world: World = SINGLE_PROCESS) -> dict[str, float]:
    """``means`` if every value is finite on every rank; else the run has diverged (on every rank at once)."""
    bad = [f"{name}={value}" for name, value in means.items() if not math.isfinite(value)]
    if any_rank(bool(bad), world):
        raise diverged(progress, ", ".join(bad) or "non-finite losses on another rank")
    return means


def check_weights(run: RunState) -> None:
    """Before anything is written from the networks: every weight and buffer (BatchNorm's running
    statistics) is finite, the EMA copy's too."""
    tensors = [tensor for network in run.networks() for tensor in network.state_dict().values()]
    if not torch.stack([tensor.isfinite().all() for tensor in tensors]).all():
        raise diverged(run.progress, "non-finite weights")


def diverged(progress: Progress, what: str) -> TrainingDiverged:
    kept = (
        f"kept the last good checkpoint {progress.last_checkpoint}"
        if progress.last_checkpoint
        else "no checkpoint was written before"
    )
    return TrainingDiverged(
        f"training diverged by step {progress.step} ({what}); {kept}; "
        "try a lower optimizer.lr or another loss (e.g. loss=nonsaturating)"
    )
