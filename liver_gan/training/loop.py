"""The training loop: a composed config in; a trained GAN, TensorBoard logs, checkpoints and metrics out.

One step, as in PyTorch's DCGAN example:

1. G draws a fake batch from z ~ N(0, I), with the real batch's labels when conditional;
2. D learns to tell the real batch from the fake one, detached so that D's backward stops at D;
3. G learns to fool the updated D on the *same* fake batch.  G has not changed since it drew the
   batch, so its graph is still exact and a second G forward would be wasted.  D is frozen for
   this backward, so no D weight gradients are computed.  A BatchNorm D thus sees the fake batch
   in train mode twice per step, as in the DCGAN example.

Speed (issue 6): the training set is one tensor on the device and batches are drawn by index;
the optimizers are fused where torch can; gradients are freed, not zeroed; a D without BatchNorm
judges the real and the fake batch in one call (losses.py); and the logged scalars
are summed on the device and read only every ``trainer.log_every`` steps, so a step never waits
for the device.  Hence non-finite losses are detected at log steps, at epoch ends and before every
checkpoint, and a diverged run never overwrites its last good checkpoint.

An epoch is ``ceil(N / batch_size)`` steps, the last one on the remaining images, as the thesis's
DataLoader (``drop_last=False``) did, so that ``trainer.epochs`` means what it meant there.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from liver_gan.atomic import atomic_write_json
from liver_gan.config import Subset
from liver_gan.data.dataset import PreparedDataset, SliceSet, prepare_dataset
from liver_gan.data.labels import HEALTHY, TUMOR
from liver_gan.data.summary import write_dataset_summary
from liver_gan.device import resolve_device
from liver_gan.errors import LiverGanError
from liver_gan.images import image_grid, write_grid_png
from liver_gan.losses import check_loss_options, discriminator_loss, generator_loss
from liver_gan.metrics.evaluate import check_eval_data, check_eval_options, evaluate_generator
from liver_gan.metrics.inception import FIDWeightsUnavailable, check_weights_available
from liver_gan.training.checkpoint import (
    build_gan,
    last_checkpoint,
    link_checkpoint,
    load_checkpoint,
    plain_config,
    save_checkpoint,
)
from liver_gan.training.optim import build_optimizers
from liver_gan.training.seeding import restore_rng_state, rng_state, seed_everything
from liver_gan.training.tensorboard import TensorBoardLogger

log = logging.getLogger(__name__)

LOGGED_SCALARS = ("loss/D", "loss/G", "D(x)", "D(G(z))")
# Options that must equal the checkpoint's when resuming: they fix the weights' shapes, the
# batch order and the fixed noise.
RESUME_MUST_MATCH = ("model", "trainer.batch_size", "trainer.num_fixed_samples")
# Written by the loop beside the documented checkpoint keys, and needed to continue exactly.
RESUME_KEYS = ("train_seconds", "log_window")


class TrainingDiverged(LiverGanError):
    """A loss became NaN or infinite; the message names the step and the last good checkpoint."""


@dataclass
class GAN:
    generator: nn.Module
    discriminator: nn.Module
    optimizer_g: torch.optim.Optimizer
    optimizer_d: torch.optim.Optimizer


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
    """Running sums of the logged scalars, kept on the training device.

    Adding never waits for the device; :meth:`means` does, once per read.
    """

    def __init__(self, device: torch.device) -> None:
        self.sums = torch.zeros(len(LOGGED_SCALARS), device=device)
        self.count = 0

    def add(self, values: Tensor) -> None:
        self.sums += values
        self.count += 1

    def means(self) -> dict[str, float]:
        return dict(zip(LOGGED_SCALARS, (self.sums / max(self.count, 1)).tolist()))

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


def train(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    """Train ``cfg``'s GAN in ``run_dir`` and return the final metrics, also written to metrics.json.

    A run that diverges, or whose FID cannot be computed for want of the Inception weights, still
    writes its metrics.json (``fid`` null), hyper-parameters and logs, then raises
    :class:`TrainingDiverged` or :class:`FIDWeightsUnavailable`.
    """
    run_dir = Path(run_dir)
    device = resolve_device(cfg.trainer.device)
    check_trainer_options(cfg, device)
    check_loss_options(cfg.loss)
    if cfg.eval.enabled:
        check_eval_options(cfg.eval, cfg.dataset)
        check_weights_available(cfg.eval.inception_weights)
    resume_from = resume_checkpoint(str(cfg.trainer.resume), run_dir)
    seed_everything(cfg.seed, cfg.trainer.deterministic)

    dataset = prepare_dataset(cfg.dataset, cfg.seed)
    if cfg.eval.enabled:
        check_eval_data(dataset, cfg.eval)
    write_dataset_summary(dataset.summary, run_dir)
    generator, discriminator = (network.to(device) for network in build_gan(cfg))
    gan = GAN(generator, discriminator, *build_optimizers(cfg.optimizer, generator, discriminator, device))
    batches = BatchOrder(len(dataset.train), cfg.trainer.batch_size, cfg.seed, device)
    fixed = draw_fixed_samples(cfg, generator.latent_dim, device)
    progress = Progress(step=0, train_seconds=0.0, window=ScalarSums(device))
    if resume_from is not None:
        fixed = resume(resume_from, cfg, dataset, gan, batches, progress, device)
    log.info(
        "training %s + %s on %d slices (dataset %s) on %s: %d steps per epoch",
        type(generator).__name__,
        type(discriminator).__name__,
        len(dataset.train),
        dataset.key[:12],
        device,
        batches.steps_per_epoch,
    )

    failure: LiverGanError | None = None
    evaluation: dict[str, Any] = {"fid": None}
    with TensorBoardLogger(run_dir / "tb", purge_step=progress.step + 1 if progress.step else None) as board:
        try:
            if progress.step == 0:
                board.image("real", image_grid(real_examples(dataset.train, fixed), fixed.columns), 0)
            fit(cfg, gan, dataset, batches, fixed, progress, board, run_dir)
            if cfg.eval.enabled:
                evaluation = evaluate_generator(gan.generator, dataset, cfg.eval, run_dir, device, cfg.seed)
        except (TrainingDiverged, FIDWeightsUnavailable) as error:
            failure = error
        seconds = progress.train_seconds
        metrics = {
            "status": run_status(failure),
            "steps": progress.step,
            "epochs": progress.step // batches.steps_per_epoch,
            "train_seconds": seconds,
            "images_per_second": batches.images_seen(progress.step) / seconds if seconds > 0 else 0.0,
            **evaluation,
        }
        atomic_write_json(run_dir / "metrics.json", metrics)
        board.config(cfg)
        board.hparams(cfg, metrics)
    log.info("run dir: %s", run_dir)
    log.info("TensorBoard: tensorboard --logdir %s", run_dir / "tb")
    if failure is not None:
        raise failure
    return metrics


def run_status(failure: LiverGanError | None) -> str:
    if isinstance(failure, TrainingDiverged):
        return "diverged"
    if isinstance(failure, FIDWeightsUnavailable):
        return "fid_unavailable"
    return "completed"


def check_trainer_options(cfg: DictConfig, device: torch.device) -> None:
    """Refuse option values that would fail (or silently do nothing) only after the dataset build."""
    trainer = cfg.trainer
    for option in ("epochs", "batch_size", "log_every", "sample_every", "checkpoint_every", "num_fixed_samples"):
        if trainer[option] < 1:
            raise LiverGanError(f"trainer.{option}={trainer[option]} must be at least 1")
    if trainer.max_steps is not None and trainer.max_steps < 1:
        raise LiverGanError(f"trainer.max_steps={trainer.max_steps} must be at least 1, or null for no cap")
    if trainer.amp and device.type != "cuda":
        raise LiverGanError(
            f"trainer.amp=true needs a CUDA device, but training runs on {device}; set trainer.amp=false"
        )
    if cfg.model.conditional:
        if Subset(cfg.dataset.subset) is not Subset.all:
            raise LiverGanError(
                f"model.conditional=true learns both classes but dataset.subset={Subset(cfg.dataset.subset).value}; "
                "set dataset.subset=all"
            )
        if trainer.num_fixed_samples < 2:
            raise LiverGanError("trainer.num_fixed_samples must be at least 2 for a conditional model (one per class)")


def resume_checkpoint(resume: str, run_dir: Path) -> Path | None:
    """The checkpoint ``trainer.resume`` asks for: none, auto (this run dir's last.pt, if any) or a file."""
    if resume == "none":
        return None
    if resume == "auto":
        last = last_checkpoint(run_dir)
        if last.is_file():
            return last
        log.info("trainer.resume=auto: no checkpoint in %s, starting a fresh run", last.parent)
        return None
    path = Path(resume)
    if not path.is_file():
        raise LiverGanError(
            f"trainer.resume={resume}: no such checkpoint file; use none, auto or a checkpoints/*.pt path"
        )
    return path


def resume(
    path: Path,
    cfg: DictConfig,
    dataset: PreparedDataset,
    gan: GAN,
    batches: BatchOrder,
    progress: Progress,
    device: torch.device,
) -> FixedSamples:
    """Load ``path`` into the networks, optimizers, random streams and ``progress``; return its fixed noise."""
    state = load_checkpoint(path)
    check_resumable(state, cfg, dataset.key, path)
    gan.generator.load_state_dict(state["generator"])
    gan.discriminator.load_state_dict(state["discriminator"])
    gan.optimizer_g.load_state_dict(state["optimizer_g"])
    gan.optimizer_d.load_state_dict(state["optimizer_d"])
    restore_rng_state(state["rng"], device)
    batches.load_state(state["rng"]["batch_order"])
    progress.step = state["step"]
    progress.train_seconds = state["train_seconds"]
    progress.window.load_state_dict(state["log_window"])
    progress.last_checkpoint = path
    log.info("resuming from %s at step %d (epoch %d)", path, state["step"], state["epoch"])
    labels = state["fixed_labels"]
    return FixedSamples(
        state["fixed_noise"].to(device), None if labels is None else labels.to(device), grid_columns(cfg)
    )


def check_resumable(state: dict[str, Any], cfg: DictConfig, dataset_key: str, path: Path) -> None:
    if any(key not in state for key in RESUME_KEYS):
        raise LiverGanError(f"checkpoint {path} was not written by liver-gan-train and cannot be resumed; start afresh")
    if state["dataset_key"] != dataset_key:
        raise LiverGanError(
            f"checkpoint {path} was trained on dataset {state['dataset_key'][:12]}, but these dataset.* options "
            f"give {dataset_key[:12]}; resume with the dataset options of that run"
        )
    saved = OmegaConf.create(state["config"])
    current = OmegaConf.create(plain_config(cfg))
    for key in RESUME_MUST_MATCH:
        if OmegaConf.select(saved, key) != OmegaConf.select(current, key):
            raise LiverGanError(
                f"checkpoint {path} has {key}={OmegaConf.select(saved, key)}, this config "
                f"{OmegaConf.select(current, key)}; resume with the same {key}"
            )


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


def fit(
    cfg: DictConfig,
    gan: GAN,
    dataset: PreparedDataset,
    batches: BatchOrder,
    fixed: FixedSamples,
    progress: Progress,
    board: TensorBoardLogger,
    run_dir: Path,
) -> None:
    """Train from ``progress.step`` to the last step, logging, sampling and checkpointing on the way."""
    trainer = cfg.trainer
    device = batches.device
    images = dataset.train.images.to(device)
    labels = dataset.train.labels.to(device) if cfg.model.conditional else None
    steps_per_epoch = batches.steps_per_epoch
    total_steps = min(trainer.epochs * steps_per_epoch, trainer.max_steps or math.inf)
    if progress.step >= total_steps:
        log.info("nothing left to train: the checkpoint is at step %d of %d", progress.step, total_steps)
        return
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bool(trainer.amp))
    epoch_sums = ScalarSums(device)
    train_seconds_before, session_start = progress.train_seconds, time.perf_counter()
    window_start, window_images = session_start, 0
    bar = tqdm(total=total_steps, initial=progress.step, unit="step", dynamic_ncols=True, disable=None)
    with logging_redirect_tqdm(), bar:
        while progress.step < total_steps:
            epoch, skip = divmod(progress.step, steps_per_epoch)
            epoch_start, epoch_images = time.perf_counter(), 0
            for indices in batches.epoch(skip):
                batch_labels = None if labels is None else labels[indices]
                values = train_step(gan, cfg.loss, images[indices], batch_labels, autocast)
                progress.window.add(values)
                epoch_sums.add(values)
                progress.step += 1
                window_images += len(indices)
                epoch_images += len(indices)
                bar.update()
                if progress.step % trainer.log_every == 0:
                    now = time.perf_counter()
                    means = log_scalars(board, gan, progress, window_images / (now - window_start))
                    bar.set_postfix({name: f"{value:.3f}" for name, value in means.items()}, refresh=False)
                    window_start, window_images = now, 0
                if progress.step == total_steps:
                    break
            progress.train_seconds = train_seconds_before + time.perf_counter() - session_start
            epoch_done = progress.step % steps_per_epoch == 0
            means = check_finite(epoch_sums.means(), progress)
            epoch_sums.reset()
            log.info(
                "epoch %d/%d%s  step %d  %s  %.0f img/s",
                epoch + 1,
                trainer.epochs,
                "" if epoch_done else " (cut short by trainer.max_steps)",
                progress.step,
                "  ".join(f"{name} {value:.4f}" for name, value in means.items()),
                epoch_images / (time.perf_counter() - epoch_start),
            )
            final = progress.step == total_steps
            sample = final or (epoch_done and (epoch + 1) % trainer.sample_every == 0)
            checkpoint = final or (epoch_done and (epoch + 1) % trainer.checkpoint_every == 0)
            if sample or checkpoint:
                check_weights(gan, progress)
            if sample:
                write_samples(board, gan.generator, fixed, progress.step, steps_per_epoch, run_dir)
            if checkpoint:
                write_checkpoint(cfg, gan, batches, fixed, progress, dataset.key, run_dir, board)


def train_step(
    gan: GAN, loss_cfg: DictConfig, real: Tensor, labels: Tensor | None, autocast: torch.autocast
) -> Tensor:
    """One D step and one G step on one batch; returns the logged scalars as one device tensor."""
    z = torch.randn(real.shape[0], gan.generator.latent_dim, device=real.device)
    with autocast:
        fake = gan.generator(z, labels)
        d_loss, real_logits, fake_logits = discriminator_loss(loss_cfg, gan.discriminator, real, fake.detach(), labels)
    gan.optimizer_d.zero_grad(set_to_none=True)
    d_loss.backward()
    gan.optimizer_d.step()

    gan.discriminator.requires_grad_(False)
    with autocast:
        g_loss = generator_loss(loss_cfg, gan.discriminator(fake, labels))
    gan.optimizer_g.zero_grad(set_to_none=True)
    g_loss.backward()
    gan.optimizer_g.step()
    gan.discriminator.requires_grad_(True)
    # D(x) and D(G(z)) are shown as probabilities, whatever the loss.
    return torch.stack(
        [d_loss.detach(), g_loss.detach(), real_logits.sigmoid().mean(), fake_logits.sigmoid().mean()]
    ).float()


def log_scalars(board: TensorBoardLogger, gan: GAN, progress: Progress, images_per_second: float) -> dict[str, float]:
    """Write the window's means (after the divergence check), learning rates and speed; reset the window."""
    means = check_finite(progress.window.means(), progress)
    board.scalars(
        {
            **means,
            "lr/G": gan.optimizer_g.param_groups[0]["lr"],
            "lr/D": gan.optimizer_d.param_groups[0]["lr"],
            "speed/images_per_second": images_per_second,
        },
        progress.step,
    )
    progress.window.reset()
    return means


def check_finite(means: dict[str, float], progress: Progress) -> dict[str, float]:
    """``means`` if every value is finite; else the run has diverged."""
    bad = [f"{name}={value}" for name, value in means.items() if not math.isfinite(value)]
    if bad:
        raise diverged(progress, ", ".join(bad))
    return means


def check_weights(gan: GAN, progress: Progress) -> None:
    """Before anything is written from the networks: every weight is finite."""
    parameters = [*gan.generator.parameters(), *gan.discriminator.parameters()]
    if not torch.stack([parameter.isfinite().all() for parameter in parameters]).all():
        raise diverged(progress, "non-finite weights")


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


@torch.no_grad()
def write_samples(
    board: TensorBoardLogger, generator: nn.Module, fixed: FixedSamples, step: int, steps_per_epoch: int, run_dir: Path
) -> None:
    """The fixed-noise grid, to TensorBoard ("samples") and to samples/epoch_XXXX.png (step_XXXXXXX.png mid-epoch)."""
    generator.eval()
    grid = image_grid(generator(fixed.noise, fixed.labels), fixed.columns)
    generator.train()
    board.image("samples", grid, step)
    epochs, rest = divmod(step, steps_per_epoch)
    name = f"epoch_{epochs:04d}.png" if rest == 0 else f"step_{step:07d}.png"
    write_grid_png(grid, run_dir / "samples" / name)


def write_checkpoint(
    cfg: DictConfig,
    gan: GAN,
    batches: BatchOrder,
    fixed: FixedSamples,
    progress: Progress,
    dataset_key: str,
    run_dir: Path,
    board: TensorBoardLogger,
) -> None:
    """checkpoints/last.pt, plus epoch_XXXX.pt at an epoch's end."""
    epochs, rest = divmod(progress.step, batches.steps_per_epoch)
    state = {
        "generator": gan.generator.state_dict(),
        "discriminator": gan.discriminator.state_dict(),
        "optimizer_g": gan.optimizer_g.state_dict(),
        "optimizer_d": gan.optimizer_d.state_dict(),
        "epoch": epochs,
        "step": progress.step,
        "rng": {**rng_state(batches.device), "batch_order": batches.state()},
        "fixed_noise": fixed.noise.cpu(),
        "fixed_labels": None if fixed.labels is None else fixed.labels.cpu(),
        "config": plain_config(cfg),
        "dataset_key": dataset_key,
        "train_seconds": progress.train_seconds,
        "log_window": progress.window.state_dict(),
    }
    # Events up to this step must be on disk before a checkpoint claims them (resume purges later ones).
    board.flush()
    last = last_checkpoint(run_dir)
    if rest == 0:
        epoch_file = last.with_name(f"epoch_{epochs:04d}.pt")
        save_checkpoint(epoch_file, state)
        link_checkpoint(epoch_file, last)
    else:
        save_checkpoint(last, state)
    progress.last_checkpoint = last
