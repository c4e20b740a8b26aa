"""The training loop: a composed config in; a trained model, TensorBoard logs, checkpoints and metrics out.

The loop is the same for every model family: the run dir, the data, logging and progress ticks,
TensorBoard, checkpoints and exact resume, the NaN guard, the time budget, fixed-noise sample
grids, the generator's EMA copy and the final evaluation.  What differs per family, its networks
and one training step, is a :class:`~liver_gan.training.family.Family` from its own module
(``gan_step.py`` for mlp/dcgan/stylegan2, ``diffusion_step.py`` for ddpm, ``inpaint_step.py`` for
the lesion inpainter).  The run's state travels as one
:class:`~liver_gan.training.run_state.RunState`; the option checks and the NaN guard are in
``checks.py``, the sample grids in ``samples.py``, the tick lines in ``liver_gan/progress.py`` and
the end-of-run report in ``outcome.py``.

With ``trainer.ema_kimg`` set, an exponential moving average of the generator
(:class:`~liver_gan.training.ema.GeneratorEMA`) is updated after every step; it draws the sample
grids and is what the evaluation (and every tool that opens the run) measures.

``trainer.max_minutes`` stops training once that much training time has passed; the run then
samples, checkpoints and evaluates as at any other end.  ``eval.every_kimg`` adds FID snapshots
during training (:mod:`liver_gan.training.snapshots`), with ``checkpoints/best.pt`` at the lowest.  metrics.json's ``stop_reason`` says what
ended training: ``epochs``, ``max_steps``, ``max_minutes`` or ``diverged``.

Speed (issue 6): the training set is one tensor on the device and batches are drawn by index;
the optimizers are fused where torch can; and the logged scalars are summed on the device and
read only every ``trainer.log_every`` steps and at each progress tick (``trainer.tick_seconds``),
so a step never waits for the device.  Hence non-finite losses are
detected at log steps, at ticks, at epoch ends and before every checkpoint, and a diverged run never
overwrites its last good checkpoint.

An epoch is ``ceil(N / batch_size)`` steps, the last one on the remaining images, as the thesis's
DataLoader (``drop_last=False``) did, so that ``trainer.epochs`` means what it meant there.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from pathlib import Path
from typing import Any, Callable

import torch
from omegaconf import DictConfig
from tqdm.contrib.logging import logging_redirect_tqdm

from liver_gan.atomic import atomic_write_json
from liver_gan.data.dataset import prepare_dataset
from liver_gan.data.summary import write_dataset_summary
from liver_gan.device import device_clock, resolve_device, training_autocast
from liver_gan.distributed import (
    World,
    any_rank,
    broadcast_buffers,
    broadcast_from_main,
    join_ranks,
    quiet_other_ranks,
    rank_device,
    rank_streams,
    shard,
    start_world,
    warn_on_another_world_size,
)
from liver_gan.errors import LiverGanError
from liver_gan.images import image_grid
from liver_gan.metrics.evaluate import check_eval_data, check_eval_options, evaluate_generator
from liver_gan.metrics.inception import FIDWeightsUnavailable, check_weights_available
from liver_gan.metrics.inpainting import evaluate_inpainter
from liver_gan.models.registry import is_inpainter
from liver_gan.progress import TrainingTicks, format_duration, tick_seconds
from liver_gan.training.batch_noise import BatchNoise
from liver_gan.training.checkpoint import (
    check_dataset,
    check_resumable,
    checkpoint_state,
    load_checkpoint,
    restore,
    resume_checkpoint,
    write_best_checkpoint,
    write_checkpoint,
)
from liver_gan.training.checks import TrainingDiverged, check_finite, check_trainer_options, check_weights
from liver_gan.training.device_images import DeviceImages
from liver_gan.training.ema import GeneratorEMA
from liver_gan.training.family import build_family, family_module, fixed_inputs
from liver_gan.training.outcome import epochs_text, last_sample_grid, log_result, steps_text
from liver_gan.training.run_dir import (
    hold_run_dir,
    refuse_fresh_start,
    remove_previous_run,
    remove_stale_temporaries,
)
from liver_gan.training.run_state import RunState, trained_networks
from liver_gan.training.samples import draw_fixed_samples, grid_columns, real_examples, write_samples
from liver_gan.training.seeding import seed_everything
from liver_gan.training.snapshots import check_snapshot_options, evaluate_snapshot, keep_snapshots_until, snapshot_due
from liver_gan.training.state import BatchOrder, Progress, ScalarSums
from liver_gan.training.tensorboard import SilentBoard, TensorBoardLogger
from liver_gan.training.threads import apply_num_threads

log = logging.getLogger(__name__)


def train(cfg: DictConfig, run_dir: Path, on_start: Callable[[], None] | None = None) -> dict[str, Any]:
    """Train ``cfg``'s model in ``run_dir`` and return the final metrics, also written to metrics.json.

    Nothing is written into ``run_dir`` before the run has passed every check: the options, the
    model's shapes and, when resuming, the checkpoint (its config before the dataset build, its
    dataset after it).  Then ``on_start`` runs (the CLI records the config there).  A run that
    diverges, or whose FID cannot be computed for want of the Inception weights, still writes
    its metrics.json (``fid`` null), hyper-parameters and logs, then raises
    :class:`TrainingDiverged` or :class:`FIDWeightsUnavailable`.
    """
    run_dir = Path(run_dir)
    world = start_world()  # one process, or one rank of a torchrun or submitit launch (distributed.py)
    device = rank_device(resolve_device(cfg.trainer.device), world)
    check_trainer_options(cfg, device, world)
    apply_num_threads(cfg.trainer.num_threads)
    family_module(cfg).check_options(cfg)
    check_snapshot_options(cfg.eval)
    if evaluates(cfg):
        check_eval_options(cfg.eval, cfg.dataset)
        check_weights_available(cfg.eval.inception_weights)
    run_dir.mkdir(parents=True, exist_ok=True)
    quiet_other_ranks(world)
    holder = hold_run_dir(run_dir) if world.is_main else contextlib.nullcontext()  # rank 0 holds it for all
    with holder, tick_seconds(cfg.trainer.tick_seconds):
        return _train(cfg, run_dir, device, on_start, world)


def _train(
    cfg: DictConfig, run_dir: Path, device: torch.device, on_start: Callable[[], None] | None, world: World
) -> dict[str, Any]:
    resume_from = resume_checkpoint(str(cfg.trainer.resume), run_dir)
    saved = None
    if resume_from is None:
        refuse_fresh_start(run_dir, cfg.trainer.overwrite)
    else:
        saved = load_checkpoint(resume_from)
        check_resumable(saved, cfg, resume_from)
    seed_everything(cfg.seed, cfg.trainer.deterministic)
    family = build_family(cfg, device)  # before the dataset build: a bad size fails at once
    trainer = cfg.trainer
    ema = None if trainer.ema_kimg is None else GeneratorEMA(family.generator, trainer.ema_kimg, trainer.ema_rampup)
    dataset = prepare_dataset(cfg.dataset, cfg.seed)
    if evaluates(cfg):
        check_eval_data(dataset, cfg.eval)
    batches = BatchOrder(len(dataset.train), cfg.trainer.batch_size, cfg.seed, device)
    columns = grid_columns(cfg)
    fixed = fixed_inputs(cfg, dataset, columns, device) or draw_fixed_samples(cfg, family.generator.latent_dim, device)
    progress = Progress(step=0, train_seconds=0.0, window=ScalarSums(family.logged_scalars, device))
    if saved is not None:
        check_dataset(saved, dataset.key, resume_from)
        fixed = restore(saved, family, ema, batches, progress, columns, resume_from)
    elif cfg.trainer.overwrite and world.is_main:
        remove_previous_run(run_dir)
    if saved is not None:
        warn_on_another_world_size(saved, world)
    if world.distributed:
        join_ranks(trained_networks(family, ema), family.optimizers().values(), saved, cfg.seed, world, device)
    if world.is_main:
        remove_stale_temporaries(run_dir)
        keep_snapshots_until(run_dir, progress.step)
        if on_start is not None:
            on_start()
        write_dataset_summary(dataset.summary, run_dir)
    total_steps = planned_steps(cfg, batches.steps_per_epoch)
    log.info(
        "training %s on %d slices (dataset %s) on %s (world_size %d): %s (%s of %s)",
        " + ".join(type(network).__name__ for network in family.networks().values()),
        len(dataset.train),
        dataset.key[:12],
        device,
        world.size,
        steps_text(total_steps),
        epochs_text(total_steps, batches.steps_per_epoch),
        steps_text(batches.steps_per_epoch),
    )

    failure: LiverGanError | None = None
    evaluation: dict[str, Any] = {"fid": None}
    stop_reason = "diverged"
    purge_step = progress.step + 1 if progress.step else None
    with TensorBoardLogger(run_dir, purge_step) if world.is_main else SilentBoard() as board:
        run = RunState(cfg, family, ema, dataset, batches, fixed, progress, board, run_dir, world)
        try:
            if progress.step == 0:
                board.image("real", image_grid(real_examples(dataset.train, fixed), fixed.columns), 0)
            stop_reason = fit(run)
            if cfg.eval.enabled:
                evaluation = final_evaluation(run) or {}
        except (TrainingDiverged, FIDWeightsUnavailable) as error:
            failure = error
        seconds = progress.train_seconds
        metrics = {
            "status": run_status(failure),
            "stop_reason": stop_reason,
            "steps": progress.step,
            "epochs": progress.step // batches.steps_per_epoch,
            "train_seconds": seconds,
            "images_per_second": batches.images_seen(progress.step) / seconds if seconds > 0 else 0.0,
            "world_size": world.size,
            **evaluation,
        }
        metrics = broadcast_from_main(metrics, world)  # every rank returns rank 0's result
        if world.is_main:
            atomic_write_json(run_dir / "metrics.json", metrics)
        board.config(cfg)
        board.hparams(cfg, metrics)
    if world.is_main:
        log_result(metrics, run_dir, last_sample_grid(run_dir), batches.steps_per_epoch)
    if failure is not None:
        raise failure
    return metrics


def final_evaluation(run: RunState) -> dict[str, Any] | None:
    """The inpainter's fills against mean-filling (it draws nothing from noise), or every other
    family's samples against the real slices."""
    cfg = run.cfg
    if is_inpainter(cfg):
        return evaluate_inpainter(run.sampler(), run.dataset, cfg, run.device, run.world)
    return evaluate_generator(
        run.sampler(), run.dataset, cfg.eval, run.run_dir, run.device, cfg.seed, run.world, cfg.trainer.max_minutes
    )


def planned_steps(cfg: DictConfig, steps_per_epoch: int) -> int:
    """``trainer.epochs`` of steps, or fewer when ``trainer.max_steps`` stops the run earlier."""
    return min(cfg.trainer.epochs * steps_per_epoch, cfg.trainer.max_steps or math.inf)


def evaluates(cfg: DictConfig) -> bool:
    """Whether the run measures its generator: at the end (``eval.enabled``) or during training (``eval.every_kimg``)."""
    return cfg.eval.enabled or cfg.eval.every_kimg is not None


def stop_reason_of(cfg: DictConfig, steps_per_epoch: int) -> str:
    """What ends a run that trains all its planned steps: ``trainer.max_steps`` or ``trainer.epochs``."""
    capped = cfg.trainer.max_steps is not None and cfg.trainer.max_steps < cfg.trainer.epochs * steps_per_epoch
    return "max_steps" if capped else "epochs"


def run_status(failure: LiverGanError | None) -> str:
    if isinstance(failure, TrainingDiverged):
        return "diverged"
    if isinstance(failure, FIDWeightsUnavailable):
        return "fid_unavailable"
    return "completed"


def fit(run: RunState) -> str:
    """Train from ``run.progress.step`` to the last step or the time budget, logging, sampling and
    checkpointing on the way; returns the stop reason.

    With several ranks each trains on its shard of every global batch, and every decision (to log,
    stop, sample, checkpoint, or declare divergence) falls on the same step on every rank; only
    rank 0 shows progress and writes.
    """
    cfg, family, ema, progress, batches, world = run.cfg, run.family, run.ema, run.progress, run.batches, run.world
    trainer = cfg.trainer
    device = run.device
    images = DeviceImages(run.dataset.train.images, device)  # float16 on the device, float32 per batch
    labels = run.dataset.train.labels.to(device) if cfg.model.conditional else None
    steps_per_epoch = batches.steps_per_epoch
    total_steps = planned_steps(cfg, steps_per_epoch)
    budget = math.inf if trainer.max_minutes is None else trainer.max_minutes * 60
    if progress.step >= total_steps or progress.train_seconds >= budget:
        log.info("nothing left to train: the checkpoint is at step %d of %d", progress.step, total_steps)
        return stop_reason_of(cfg, steps_per_epoch) if progress.step >= total_steps else "max_minutes"
    autocast = training_autocast(device, bool(trainer.amp))
    tick_sums = ScalarSums(family.logged_scalars, device)  # the scalars since the last tick line
    # device_clock waits for the device's queued work: else a GPU's speed would be its queueing speed.
    train_seconds_before, session_start = progress.train_seconds, device_clock(device)
    window_start, window_images = session_start, 0
    ticks = TrainingTicks(
        total_steps, progress.step, steps_per_epoch, device, show=world.is_main, seconds_left=budget - train_seconds_before
    )
    out_of_time = False
    with logging_redirect_tqdm(), ticks:
        while progress.step < total_steps and not out_of_time:
            epoch, skip = divmod(progress.step, steps_per_epoch)
            for batch in batches.epoch(skip):
                rows = shard(torch.arange(len(batch), device=batch.device), world)
                indices = batch[rows]
                batch_labels = None if labels is None else labels[indices]
                noise = BatchNoise.of_step(cfg.seed, progress.step, rows, len(batch))
                values = family.step(images[indices], batch_labels, autocast, noise)
                if ema is not None:
                    ema.update(family.generator, len(batch), batches.images_seen(progress.step))
                progress.window.add(values)
                tick_sums.add(values)
                progress.step += 1
                window_images += len(batch)
                ticks.advance(len(batch))
                out_of_time = train_seconds_before + time.perf_counter() - session_start >= budget
                if world.distributed and budget < math.inf:
                    out_of_time = any_rank(out_of_time, world)  # clocks differ: the ranks stop together
                last = progress.step == total_steps or out_of_time
                on_cadence = progress.step % trainer.log_every == 0
                # The last step is always logged, so that the curves reach the end of the run.
                if on_cadence or last:
                    now = device_clock(device)
                    log_scalars(run, window_images / (now - window_start), reset=on_cadence)
                    window_start, window_images = now, 0
                if world.is_main and (ticks.due(progress.step) or out_of_time):
                    kimg = batches.images_seen(progress.step) / 1000
                    # Ticks come when rank 0's clock says: with other ranks they only show, the checks are on steps.
                    means = tick_sums.means()
                    ticks.tick(progress.step, kimg, means if world.distributed else check_finite(means, progress))
                    tick_sums.reset()
                images_before = batches.images_seen(progress.step - 1)
                if snapshot_due(images_before, batches.images_seen(progress.step), cfg.eval.every_kimg):
                    progress.train_seconds = train_seconds_before + device_clock(device) - session_start
                    take_snapshot(run)
                if last:
                    break
            progress.train_seconds = train_seconds_before + device_clock(device) - session_start
            epoch_done = progress.step % steps_per_epoch == 0
            check_finite(tick_sums.means(), progress, world)
            final = progress.step == total_steps or out_of_time
            sample = final or (epoch_done and (epoch + 1) % trainer.sample_every == 0)
            checkpoint = final or (epoch_done and (epoch + 1) % trainer.checkpoint_every == 0)
            if sample or checkpoint:
                sample_and_checkpoint(run, sample, checkpoint)
    if out_of_time and progress.step < total_steps:
        log.info(
            "trainer.max_minutes=%s: stopped after %s of training, at step %d of %d",
            trainer.max_minutes,
            format_duration(progress.train_seconds),
            progress.step,
            total_steps,
        )
        return "max_minutes"
    return stop_reason_of(cfg, steps_per_epoch)


def settle_weights(run: RunState) -> None:
    """Before anything is written or measured from the networks: the same buffers (BatchNorm's
    running statistics) on every rank, and every weight finite."""
    if run.world.distributed:
        broadcast_buffers(run.networks())
    check_weights(run)


def sample_and_checkpoint(run: RunState, sample: bool, checkpoint: bool) -> None:
    """At an epoch's end on the ``trainer.sample_every`` / ``checkpoint_every`` cadences, and at the
    last step: the fixed-noise grid (rank 0) and the checkpoint (every rank's noise stream, rank 0 writes)."""
    settle_weights(run)
    progress, steps_per_epoch = run.progress, run.batches.steps_per_epoch
    if sample and run.world.is_main:
        write_samples(run.board, run.sampler(), run.fixed, progress.step, steps_per_epoch, run.run_dir)
    if checkpoint:
        streams = rank_streams(run.world, run.device)  # every rank's noise stream, for an exact resume
        if run.world.is_main:
            # Events up to this step must be on disk before a checkpoint claims them (resume purges later ones).
            run.board.flush()
            state = checkpoint_state(run, streams)
            write_checkpoint(state, run.run_dir, progress, steps_per_epoch, run.cfg.trainer.keep_last_n)


def take_snapshot(run: RunState) -> None:
    """An FID snapshot: to metrics.jsonl and TensorBoard (``metrics/fid``), and checkpoints/best.pt
    when it is the lowest so far.  Every rank samples its share; rank 0 measures and writes."""
    progress = run.progress
    settle_weights(run)
    kimg = run.batches.images_seen(progress.step) / 1000
    record = evaluate_snapshot(
        run.sampler(), run.dataset, run.cfg.eval, run.run_dir, run.device, run.cfg.seed, progress.step, kimg, run.world
    )
    streams = rank_streams(run.world, run.device)  # on every rank: best.pt may need them
    if record is None:  # a rank other than 0
        return
    run.board.scalars({"metrics/fid": record["fid"]}, progress.step)
    log.info(
        "snapshot at kimg %.1f (step %d): FID %.4g from %d generated slices",
        kimg,
        progress.step,
        record["fid"],
        record["num_fake"],
    )
    if progress.best_fid is None or record["fid"] < progress.best_fid:
        progress.best_fid = record["fid"]
        run.board.flush()
        best = write_best_checkpoint(checkpoint_state(run, streams), run.run_dir)
        log.info("lowest snapshot FID so far: %s", best)


def log_scalars(run: RunState, images_per_second: float, reset: bool) -> dict[str, float]:
    """Write the window's means (after the divergence check), learning rates and speed.

    The window is reset on the ``trainer.log_every`` cadence only: a last step off the cadence is
    logged with the window kept, so that a run resumed from there (with a higher trainer.max_steps)
    logs its next point over the same steps as an uninterrupted run.
    """
    progress, family = run.progress, run.family
    means = check_finite(progress.window.means(), progress, run.world)
    run.board.scalars(
        {
            **means,
            **family.learning_rates(),
            **{tag: float(value) for tag, value in family.monitored().items()},
            "speed/images_per_second": images_per_second,
        },
        progress.step,
    )
    if reset:
        progress.window.reset()
    return means
