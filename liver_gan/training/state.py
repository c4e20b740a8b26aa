"""What a training run holds while it runs, whatever the model family: the fixed noise of the sample
grids, the batch order, the running sums of the logged scalars and the progress.  The networks
and optimizers are the family's (:mod:`liver_gan.training.family`); the loop carries all of it
together in one :class:`~liver_gan.training.run_state.RunState`.

All of it goes into checkpoints (:mod:`liver_gan.training.checkpoint`) and comes back on resume.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
from torch import Tensor


@dataclass(frozen=True)
class FixedSamples:
    """The noise (and labels) behind every sample grid, so that grids are comparable across epochs."""

    noise: Tensor
    labels: Tensor | None
    columns: int


class BatchOrder:
    """Minibatch indices: a fresh permutation of the training set per epoch, from a generator of its own.

    Its state goes into checkpoints.  During an epoch, :meth:`state` is the state from before that
    epoch's permutation, so a run resumed from a mid-epoch checkpoint (one capped by
    ``trainer.max_steps``) redraws the same permutation and skips the batches already done.
    """

    def __init__(self, num_images: int, batch_size: int, seed: int, device: torch.device) -> None:
        self.num_images = num_images
        self.batch_size = batch_size
        self.device = device
        self.steps_per_epoch = math.ceil(num_images / batch_size)
        self.generator = torch.Generator().manual_seed(seed)
        self._epoch_start_state: Tensor | None = None

    def epoch(self, skip: int = 0) -> Iterator[Tensor]:
        self._epoch_start_state = self.generator.get_state()
        permutation = torch.randperm(self.num_images, generator=self.generator).to(self.device)
        yield from permutation.split(self.batch_size)[skip:]
        self._epoch_start_state = None

    def state(self) -> Tensor:
        return self.generator.get_state() if self._epoch_start_state is None else self._epoch_start_state

    def load_state(self, state: Tensor) -> None:
        self.generator.set_state(state)
        self._epoch_start_state = None

    def images_seen(self, step: int) -> int:
        epochs, batches = divmod(step, self.steps_per_epoch)
        return epochs * self.num_images + batches * self.batch_size


class ScalarSums:
    """Running sums of the logged scalars ``names`` (a family's training step returns their values),
    kept on the training device.

    Adding never waits for the device; :meth:`means` does, once per read.
    """

    def __init__(self, names: tuple[str, ...], device: torch.device) -> None:
        self.names = names
        self.sums = torch.zeros(len(names), device=device)
        self.count = 0

    def add(self, values: Tensor) -> None:
        self.sums += values
        self.count += 1

    def means(self) -> dict[str, float]:
        return dict(zip(self.names, (self.sums / max(self.count, 1)).tolist()))

    def reset(self) -> None:
        self.sums.zero_()
        self.count = 0

    def state_dict(self) -> dict[str, Any]:
        return {"sums": self.sums.cpu(), "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sums.copy_(state["sums"])
        self.count = state["count"]


@dataclass
class Progress:
    """Where the run stands; ``window`` holds the scalars since the last log step."""

    step: int
    train_seconds: float
    window: ScalarSums
    last_checkpoint: Path | None = None
    best_fid: float | None = None  # the lowest snapshot FID so far (eval.every_kimg), that of checkpoints/best.pt
