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
are summed on the device and read only every ``trainer.log_every`` steps and at each progress tick
(``trainer.tick_seconds``), so a step never waits for the device.  Hence non-finite losses are
detected at log steps, at ticks, at epoch ends and before every checkpoint, and a diverged run never
overwrites its last good checkpoint.

An epoch is ``ceil(N / batch_size)`` steps, the last one on the remaining images, as the thesis's
DataLoader (``drop_last=False``) did, so that ``trainer.epochs`` means what it meant there.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any, Callable

import torch
from omegaconf import DictConfig
from torch import Tensor, nn
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
from liver_gan.models import build_gan
from liver_gan.training.checkpoint import (
    check_dataset,
    check_resumable,
    load_checkpoint,
    restore,
    resume_checkpoint,
    write_checkpoint,
)
from liver_gan.progress import tick_seconds
from liver_gan.training.optim import build_optimizers
from liver_gan.training.progress import TrainingTicks, log_result
from liver_gan.training.run_dir import (
    hold_run_dir,
    refuse_fresh_start,
    remove_previous_run,
    remove_stale_temporaries,
)
from liver_gan.training.seeding import seed_everything
from liver_gan.training.state import GAN, BatchOrder, FixedSamples, Progress, ScalarSums
from liver_gan.training.tensorboard import TensorBoardLogger

log = logging.getLogger(__name__)


class TrainingDiverged(LiverGanError):
    """A loss became NaN or infinite; the message names the step and the last good checkpoint."""


def train(cfg: DictConfig, run_dir: Path, on_start: Callable[[], None] | None = None) -> dict[str, Any]:
    """Train ``cfg``'s GAN in ``run_dir`` and return the final metrics, also written to metrics.json.

    Nothing is written into ``run_dir`` before the run has passed every check: the options, the
    model's shapes and, when resuming, the checkpoint (its config before the dataset build, its
    dataset after it).  Then ``on_start`` runs (the CLI records the config there).  A run that
    diverges, or whose FID cannot be computed for want of the Inception weights, still writes
    its metrics.json (``fid`` null), hyper-parameters and logs, then raises
    :class:`TrainingDiverged` or :class:`FIDWeightsUnavailable`.
    """
    run_dir = Path(run_dir)
    device = resolve_device(cfg.trainer.device)
    check_trainer_options(cfg, device)
    check_loss_options(cfg.loss)
    if cfg.eval.enabled:
        check_eval_options(cfg.eval, cfg.dataset)
        check_weights_available(cfg.eval.inception_weights)
    run_dir.mkdir(parents=True, exist_ok=True)
    with hold_run_dir(run_dir), tick_seconds(cfg.trainer.tick_seconds):
        return _train(cfg, run_dir, device, on_start)


def _train(cfg: DictConfig, run_dir: Path, device: torch.device, on_start: Callable[[], None] | None) -> dict[str, Any]:
    resume_from = resume_checkpoint(str(cfg.trainer.resume), run_dir)
    saved = None
    if resume_from is None:
        refuse_fresh_start(run_dir, cfg.trainer.overwrite)
    else:
        saved = load_checkpoint(resume_from)
        check_resumable(saved, cfg, resume_from)
    seed_everything(cfg.seed, cfg.trainer.deterministic)
    generator, discriminator = build_gan(cfg)  # before the dataset build: a bad size fails at once
    dataset = prepare_dataset(cfg.dataset, cfg.seed)
    if cfg.eval.enabled:
        check_eval_data(dataset, cfg.eval)
    generator, discriminator = generator.to(device), discriminator.to(device)
    gan = GAN(generator, discriminator, *build_optimizers(cfg.optimizer, generator, discriminator, device))
    batches = BatchOrder(len(dataset.train), cfg.trainer.batch_size, cfg.seed, device)
    fixed = draw_fixed_samples(cfg, generator.latent_dim, device)
    progress = Progress(step=0, train_seconds=0.0, window=ScalarSums(device))
    if saved is not None:
        check_dataset(saved, dataset.key, resume_from)
        fixed = restore(saved, gan, batches, progress, grid_columns(cfg), resume_from)
    elif cfg.trainer.overwrite:
        remove_previous_run(run_dir)
    remove_stale_temporaries(run_dir)
    if on_start is not None:
        on_start()
    write_dataset_summary(dataset.summary, run_dir)
    total_steps = planned_steps(cfg, batches.steps_per_epoch)
    log.info(
        "training %s + %s on %d slices (dataset %s) on %s: %d steps, %d epochs of %d steps",
        type(generator).__name__,
        type(discriminator).__name__,
        len(dataset.train),
        dataset.key[:12],
        device,
        total_steps,
        math.ceil(total_steps / batches.steps_per_epoch),
        batches.steps_per_epoch,
    )

    failure: LiverGanError | None = None
    evaluation: dict[str, Any] = {"fid": None}
    with TensorBoardLogger(run_dir, purge_step=progress.step + 1 if progress.step else None) as board:
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
    log_result(metrics, run_dir, last_sample_grid(run_dir))
    if failure is not None:
        raise failure
    return metrics


def planned_steps(cfg: DictConfig, steps_per_epoch: int) -> int:
    """``trainer.epochs`` of steps, or fewer when ``trainer.max_steps`` stops the run earlier."""
    return min(cfg.trainer.epochs * steps_per_epoch, cfg.trainer.max_steps or math.inf)


def last_sample_grid(run_dir: Path) -> Path | None:
    """The newest samples/*.png (a resumed run writes after the grids it found)."""
    grids = list((run_dir / "samples").glob("*.png"))
    return max(grids, key=lambda path: path.stat().st_mtime_ns) if grids else None


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
    if trainer.tick_seconds < 0:
        raise LiverGanError(f"trainer.tick_seconds={trainer.tick_seconds} must be at least 0 (0: a line every step)")
    if trainer.max_steps is not None and trainer.max_steps < 1:
        raise LiverGanError(f"trainer.max_steps={trainer.max_steps} must be at least 1, or null for no cap")
    if trainer.keep_last_n is not None and trainer.keep_last_n < 0:
        raise LiverGanError(f"trainer.keep_last_n={trainer.keep_last_n} must be at least 0, or null to keep every epoch checkpoint")
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
    total_steps = planned_steps(cfg, steps_per_epoch)
    if progress.step >= total_steps:
        log.info("nothing left to train: the checkpoint is at step %d of %d", progress.step, total_steps)
        return
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bool(trainer.amp))
    tick_sums = ScalarSums(device)  # the scalars since the last tick line
    train_seconds_before, session_start = progress.train_seconds, time.perf_counter()
    window_start, window_images = session_start, 0
    ticks = TrainingTicks(total_steps, progress.step, steps_per_epoch, device)
    with logging_redirect_tqdm(), ticks:
        while progress.step < total_steps:
            epoch, skip = divmod(progress.step, steps_per_epoch)
            for indices in batches.epoch(skip):
                batch_labels = None if labels is None else labels[indices]
                values = train_step(gan, cfg.loss, images[indices], batch_labels, autocast)
                progress.window.add(values)
                tick_sums.add(values)
                progress.step += 1
                window_images += len(indices)
                ticks.advance(len(indices))
                on_cadence = progress.step % trainer.log_every == 0
                # The last step is always logged, so that the curves reach the end of the run.
                if on_cadence or progress.step == total_steps:
                    now = time.perf_counter()
                    log_scalars(board, gan, progress, window_images / (now - window_start), reset=on_cadence)
                    window_start, window_images = now, 0
                if ticks.due(progress.step):
                    kimg = batches.images_seen(progress.step) / 1000
                    ticks.tick(progress.step, kimg, check_finite(tick_sums.means(), progress))
                    tick_sums.reset()
                if progress.step == total_steps:
                    break
            progress.train_seconds = train_seconds_before + time.perf_counter() - session_start
            epoch_done = progress.step % steps_per_epoch == 0
            check_finite(tick_sums.means(), progress)
            final = progress.step == total_steps
            sample = final or (epoch_done and (epoch + 1) % trainer.sample_every == 0)
            checkpoint = final or (epoch_done and (epoch + 1) % trainer.checkpoint_every == 0)
            if sample or checkpoint:
                check_weights(gan, progress)
            if sample:
                write_samples(board, gan.generator, fixed, progress.step, steps_per_epoch, run_dir)
            if checkpoint:
                # Events up to this step must be on disk before a checkpoint claims them (resume purges later ones).
                board.flush()
                write_checkpoint(cfg, gan, batches, fixed, progress, dataset.key, run_dir)


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


def log_scalars(
    board: TensorBoardLogger, gan: GAN, progress: Progress, images_per_second: float, reset: bool
) -> dict[str, float]:
    """Write the window's means (after the divergence check), learning rates and speed.

    The window is reset on the ``trainer.log_every`` cadence only: a last step off the cadence is
    logged with the window kept, so that a run resumed from there (with a higher trainer.max_steps)
    logs its next point over the same steps as an uninterrupted run.
    """
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
    if reset:
        progress.window.reset()
    return means


def check_finite(means: dict[str, float], progress: Progress) -> dict[str, float]:
    """``means`` if every value is finite; else the run has diverged."""
    bad = [f"{name}={value}" for name, value in means.items() if not math.isfinite(value)]
    if bad:
        raise diverged(progress, ", ".join(bad))
    return means


def check_weights(gan: GAN, progress: Progress) -> None:
    """Before anything is written from the networks: every weight and buffer (BatchNorm's running
    statistics) is finite."""
    tensors = [*gan.generator.state_dict().values(), *gan.discriminator.state_dict().values()]
    if not torch.stack([tensor.isfinite().all() for tensor in tensors]).all():
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
