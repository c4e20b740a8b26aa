"""One training run's state, built once by the loop and shared by everything that trains, logs,
samples, checkpoints or measures during the run: the config, the family's networks and optimizers,
the generator's EMA copy, the data, the batch order, the fixed samples, the progress, the
TensorBoard writer, the run dir and the ranks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import nn

from liver_gan.data.dataset import PreparedDataset
from liver_gan.distributed import SINGLE_PROCESS, World
from liver_gan.training.ema import GeneratorEMA
from liver_gan.training.family import Family
from liver_gan.training.state import BatchOrder, FixedSamples, Progress
from liver_gan.training.tensorboard import TensorBoardLogger


@dataclass
class RunState:
    """What ``fit``, ``take_snapshot``, ``log_scalars``, the NaN guard and the checkpoint writer
    share; ``progress`` advances as the run goes, the other fields hold the same objects throughout."""

    cfg: DictConfig
    family: Family
    ema: GeneratorEMA | None
    dataset: PreparedDataset
    batches: BatchOrder
    fixed: FixedSamples
    progress: Progress
    board: TensorBoardLogger  # a SilentBoard on the ranks other than 0
    run_dir: Path
    world: World = SINGLE_PROCESS

    @property
    def device(self) -> torch.device:
        return self.batches.device

    def sampler(self) -> nn.Module:
        """What draws the sample grids and is evaluated: the EMA copy when there is one."""
        return self.family.generator if self.ema is None else self.ema.module

    def networks(self) -> list[nn.Module]:
        """Every network of the run, the EMA copy included."""
        return trained_networks(self.family, self.ema)


def trained_networks(family: Family, ema: GeneratorEMA | None) -> list[nn.Module]:
    """Every network of the run, the EMA copy included: what must be equal on every rank, and
    finite before anything is written from it."""
    return [*family.networks().values(), *([] if ema is None else [ema.module])]
