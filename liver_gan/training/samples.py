"""The sample grids of a training run: the fixed noise (and labels) behind them, their layout
(a conditional model's healthy row above its tumor row), the real slices laid out alike, and
writing a grid to TensorBoard and samples/."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from liver_gan.data.dataset import SliceSet
from liver_gan.data.labels import HEALTHY, TUMOR
from liver_gan.images import image_grid, write_grid_png
from liver_gan.training.state import FixedSamples
from liver_gan.training.tensorboard import TensorBoardLogger


def grid_columns(cfg: DictConfig) -> int:
    """Columns of a sample grid: square-ish, and for a conditional model a healthy row above a tumor row."""
    count = cfg.trainer.num_fixed_samples
    columns = math.ceil(math.sqrt(count))
    return min(columns, count // 2) if cfg.model.conditional else columns


def draw_fixed_samples(cfg: DictConfig, latent_dim: int, device: torch.device) -> FixedSamples:
    """``trainer.num_fixed_samples`` noise vectors from ``seed``, drawn apart from the global stream.

    A conditional model gets row pairs, a healthy row above a tumor row with the same z in each
    column, so that the two classes are compared at equal noise; the count is rounded down to
    whole row pairs.
    """
    columns = grid_columns(cfg)
    noise_generator = torch.Generator().manual_seed(cfg.seed)
    if not cfg.model.conditional:
        noise = torch.randn(cfg.trainer.num_fixed_samples, latent_dim, generator=noise_generator)
        return FixedSamples(noise.to(device), None, columns)
    per_class = cfg.trainer.num_fixed_samples // 2 // columns * columns
    noise = torch.randn(per_class, latent_dim, generator=noise_generator)
    healthy = torch.full((per_class,), HEALTHY, dtype=torch.long)
    tumor = torch.full((per_class,), TUMOR, dtype=torch.long)
    return FixedSamples(
        interleave_rows([noise, noise], columns).to(device),
        interleave_rows([healthy, tumor], columns).to(device),
        columns,
    )


def interleave_rows(per_class: list[Tensor], columns: int) -> Tensor:
    """``[a, b]`` -> a's first row, b's first row, a's second row, ... (rows of ``columns`` items)."""
    rows = zip(*(values.split(columns) for values in per_class))
    return torch.cat([row for pair in rows for row in pair])


def real_examples(train: SliceSet, fixed: FixedSamples) -> Tensor:
    """Real slices laid out like the sample grid: the first ones, or per class in row pairs."""
    if fixed.labels is None:
        return train.images[: len(fixed.noise)]
    per_class = len(fixed.noise) // 2
    examples = [train.of_class(label).images[:per_class] for label in (HEALTHY, TUMOR)]
    return interleave_rows(examples, fixed.columns)


@torch.no_grad()
def write_samples(
    board: TensorBoardLogger, generator: nn.Module, fixed: FixedSamples, step: int, steps_per_epoch: int, run_dir: Path
) -> None:
    """The fixed-noise grid, to TensorBoard ("samples") and to samples/epoch_XXXX.png (step_XXXXXXX.png mid-epoch)."""
    was_training = generator.training
    generator.eval()
    grid = image_grid(generator(fixed.noise, fixed.labels), fixed.columns)
    generator.train(was_training)
    board.image("samples", grid, step)
    epochs, rest = divmod(step, steps_per_epoch)
    name = f"epoch_{epochs:04d}.png" if rest == 0 else f"step_{step:07d}.png"
    write_grid_png(grid, run_dir / "samples" / name)
