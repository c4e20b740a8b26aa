"""Training speed of experiment=thesis, side by side, and what each step of the way buys.

Rows of the main table, all the Table-2 MLP at batch 64 on the CPU:

- the thesis's pipeline (thesis_pipeline.py), with DataLoader num_workers 2 and 0;
- the thesis's loop on the same images held as one in-memory tensor (only the data source changes);
- liver-gan's training loop: ``fit``'s inner loop as loop.py runs it (``BatchOrder`` batches by index,
  ``train_step``, the scalars summed on the device and read every ``trainer.log_every`` steps), on a
  training set of the thesis's size;
- liver-gan's ``train()`` end to end on the default phantom (``experiment=thesis``, eval off,
  ``trainer.max_steps``), logging, sample grids and checkpoints included;
- the matmul-only limit (gemm_limit.py).

Every steps/s figure is projected onto the full thesis run, 1000 epochs of ceil(6410 / 64) steps.
Further tables: the optimizer step per implementation, bf16 autocast, and DCGAN images/s.
"""

from __future__ import annotations

import math
import shlex
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig

from liver_gan.data.dataset import prepare_dataset
from liver_gan.training.checkpoint import build_gan
from liver_gan.training.loop import GAN, BatchOrder, ScalarSums, train, train_step
from liver_gan.training.optim import build_optimizers

from configs import compose_config, workdir_overrides
from gemm_limit import gan_step_gemms, gemm_runner, step_gflop
from measure import GPU_NOT_MEASURED, Figure, Section, announce, format_duration, rates, repeat_seconds
from thesis_pipeline import (
    THESIS_BATCH,
    THESIS_SLICES,
    THESIS_STEPS_PER_EPOCH,
    THESIS_TOTAL_STEPS,
    export_command,
    thesis_imagefolder,
    thesis_models,
    thesis_training,
    time_thesis_pipeline,
)

CPU = torch.device("cpu")
STEPS_PER_S = "steps/s"
PROJECTION_COLUMN = "full thesis run, 101,000 steps: median (fastest - slowest)"
THESIS_TARGET_STEPS_PER_S = 25.0

# Steps per timed repeat: (default run, --quick).
STEPS = {
    "thesis_pipeline": (THESIS_STEPS_PER_EPOCH, 12),
    "in_memory": (200, 30),
    "liver_gan": (400, 50),
    "end_to_end": (400, 50),
    "limit": (200, 30),
    "optimizer": (50, 10),
    "dcgan64": (10, 3),
    "dcgan128": (5, 2),
}


def steps_for(name: str, quick: bool) -> int:
    return STEPS[name][1 if quick else 0]


def thesis_config(workdir: Path, *overrides: str) -> DictConfig:
    """``liver-gan-train experiment=thesis`` on the CPU, with evaluation off."""
    return compose_config(
        ["experiment=thesis", "trainer.device=cpu", "eval.enabled=false", *workdir_overrides(workdir), *overrides]
    )


def thesis_sized(images: torch.Tensor) -> torch.Tensor:
    """The phantom's tumor slices repeated to the thesis's 6,410, so an epoch has its 101 steps."""
    repeats = -(-THESIS_SLICES // len(images))
    return images.repeat(repeats, 1, 1, 1)[:THESIS_SLICES].contiguous()


def shuffled_batches(images: torch.Tensor) -> Iterator[torch.Tensor]:
    """The naive in-memory loader: a permutation per epoch, batches gathered by index."""
    while True:
        for indices in torch.randperm(len(images)).split(THESIS_BATCH):
            yield images[indices]


def in_memory_thesis_loop(images: torch.Tensor) -> Callable[[int], None]:
    step = thesis_training()
    batches = shuffled_batches(images)
    return repeated(lambda: step(next(batches)))


def liver_gan_loop(cfg: DictConfig, images: torch.Tensor, autocast: bool = False) -> Callable[[int], None]:
    """``fit``'s inner loop from loop.py on ``images``, without the progress bar and TensorBoard writes."""
    torch.manual_seed(cfg.seed)
    generator, discriminator = build_gan(cfg)
    gan = GAN(generator, discriminator, *build_optimizers(cfg.optimizer, generator, discriminator, CPU))
    order = BatchOrder(len(images), cfg.trainer.batch_size, cfg.seed, CPU)
    window = ScalarSums(CPU)
    autocast_mode = torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast)
    log_every = cfg.trainer.log_every

    def batches() -> Iterator[torch.Tensor]:
        while True:
            yield from order.epoch()

    stream = batches()

    def run(steps: int) -> None:
        for step in range(1, steps + 1):
            window.add(train_step(gan, cfg.loss, images[next(stream)], None, autocast_mode))
            if step % log_every == 0:
                window.means()
                window.reset()
        window.means()

    return run


def repeated(run_once: Callable[[], object]) -> Callable[[int], None]:
    """A loop of ``count`` calls of ``run_once``, the form :func:`time_loop` times."""

    def run(count: int) -> None:
        for _ in range(count):
            run_once()

    return run


def time_loop(run: Callable[[int], None], steps: int, repeats: int) -> tuple[float, ...]:
    """steps/s per repeat, after a short warm-up of the same loop."""
    run(min(steps, 10))
    return rates(steps, repeat_seconds(lambda: run(steps), repeats, warmup=0))


def measure_rate(section: Section, name: str, limit: str, measure: Callable[[], tuple[float, ...]]) -> Figure:
    """Announce, measure and add a steps/s figure."""
    announce(name)
    return add_rate(section, name, limit, measure())


def add_rate(section: Section, name: str, limit: str, values: tuple[float, ...]) -> Figure:
    """A steps/s figure with the full thesis run projected from it."""
    figure = Figure(name, STEPS_PER_S, values, limit=limit)
    return section.add(figure, projected(figure))


def projected(figure: Figure) -> str:
    """The full thesis run at this figure's median (and its min-max range)."""
    median = format_duration(THESIS_TOTAL_STEPS / figure.median)
    fastest, slowest = (format_duration(THESIS_TOTAL_STEPS / rate) for rate in (figure.high, figure.low))
    return f"{median} ({fastest} - {slowest})"


@dataclass(frozen=True)
class EndToEnd:
    step_rates: tuple[float, ...]  # steps / train_seconds, as metrics.json reports them
    overheads: tuple[float, ...]  # wall time of train() outside its train_seconds
    steps_per_epoch: int


def end_to_end(workdir: Path, max_steps: int, repeats: int, *overrides: str) -> EndToEnd:
    """``train()`` of experiment=thesis capped at ``max_steps``, each repeat in a fresh run dir."""
    step_rates, overheads, metrics = [], [], {}
    for _ in range(repeats):
        run_dir = Path(tempfile.mkdtemp(prefix="train-", dir=workdir))
        try:
            cfg = thesis_config(workdir, f"trainer.max_steps={max_steps}", *overrides)
            start = time.perf_counter()
            metrics = train(cfg, run_dir)
            wall = time.perf_counter() - start
        finally:
            shutil.rmtree(run_dir)
        step_rates.append(metrics["steps"] / metrics["train_seconds"])
        overheads.append(wall - metrics["train_seconds"])
    return EndToEnd(tuple(step_rates), tuple(overheads), metrics["steps"] // max(metrics["epochs"], 1))


def benchmark_end_to_end(section: Section, workdir: Path, max_steps: int, repeats: int) -> tuple[Figure, Figure]:
    """``train()`` as experiment=thesis runs on the default phantom, and with the thesis run's cadence.

    The phantom's tumor slices make short epochs, so "a checkpoint every 20 epochs" comes every
    few dozen steps there, against every 2,020 steps in the thesis run.  The second row scales
    ``checkpoint_every`` and ``sample_every`` to the thesis's epoch length, which leaves no
    checkpoint or grid inside the capped run, as in the thesis run's first 2,020 steps.
    """
    name = f"liver-gan train() end to end, trainer.max_steps={max_steps}"
    announce(name)
    runs = end_to_end(workdir, max_steps, repeats)
    as_configured = add_rate(
        section,
        name,
        f"as the loop row, plus a checkpoint every 20 and a sample grid every 30 of the phantom's "
        f"{runs.steps_per_epoch}-step epochs",
        runs.step_rates,
    )
    checkpoint_every, sample_every = (
        math.ceil(epochs * THESIS_STEPS_PER_EPOCH / runs.steps_per_epoch) for epochs in (20, 30)
    )
    name = f"liver-gan train() end to end, max_steps={max_steps}, thesis cadence"
    announce(name)
    scaled = end_to_end(
        workdir,
        max_steps,
        repeats,
        f"trainer.checkpoint_every={checkpoint_every}",
        f"trainer.sample_every={sample_every}",
    )
    thesis_cadence = add_rate(
        section,
        name,
        f"as the loop row, plus train()'s own work per step and epoch (trainer.checkpoint_every={checkpoint_every} "
        f"trainer.sample_every={sample_every}: the thesis's 2,020 and 3,030 steps)",
        scaled.step_rates,
    )
    overheads = runs.overheads + scaled.overheads
    section.notes.append(
        f"train() spent {format_duration(min(overheads))} - {format_duration(max(overheads))} per run outside its "
        "train_seconds (warm dataset load, model and TensorBoard set-up, the final grid and checkpoint)"
    )
    return as_configured, thesis_cadence


def benchmark_thesis_run(workdir: Path, quick: bool, repeats: int) -> tuple[Section, Figure, torch.Tensor]:
    section = Section("Training: experiment=thesis (Table-2 MLP, batch 64, CPU fp32)")
    section.extra_columns = (PROJECTION_COLUMN,)
    root = thesis_imagefolder(workdir)
    pipeline = {
        workers: measure_rate(
            section,
            f"thesis pipeline, num_workers={workers}",
            "PNG decode + Resize of 64 512x512 images per step; the for-loop Adam",
            lambda workers=workers: tuple(
                1 / s for s in time_thesis_pipeline(root, workers, steps_for("thesis_pipeline", quick), repeats)
            ),
        )
        for workers in (2, 0)
    }
    cfg = thesis_config(workdir)
    images = thesis_sized(prepare_dataset(cfg.dataset, cfg.seed).train.images)
    in_memory = measure_rate(
        section,
        "thesis loop, data as one in-memory tensor",
        "a second G forward per step, D weight gradients in the G step, the for-loop Adam",
        lambda: time_loop(in_memory_thesis_loop(images), steps_for("in_memory", quick), repeats),
    )
    ours = measure_rate(
        section,
        "liver-gan loop (loop.py: BatchOrder + train_step + ScalarSums)",
        "the GEMMs plus per-op overhead (bias, activations, loss, autograd) and the fused Adam",
        lambda: time_loop(liver_gan_loop(cfg, images), steps_for("liver_gan", quick), repeats),
    )
    whole, thesis_cadence = benchmark_end_to_end(section, workdir, steps_for("end_to_end", quick), repeats)
    generator, discriminator = thesis_models()
    gemms = gan_step_gemms(generator, discriminator, THESIS_BATCH)
    limit = measure_rate(
        section,
        f"matmul-only limit ({step_gflop(gemms):.2f} GFLOP per step)",
        "the GEMMs of one step alone: BLAS throughput on these cores",
        lambda: time_loop(repeated(gemm_runner(gemms)), steps_for("limit", quick), repeats),
    )
    section.notes.append(f"matmul-only limit: {limit.median * step_gflop(gemms):.0f} GFLOP/s at its median")
    section.unmeasured.append(("liver-gan loop on a GPU", GPU_NOT_MEASURED))

    section.check("liver-gan loop steps/s", ours.median, at_least=THESIS_TARGET_STEPS_PER_S)
    section.check("liver-gan train() steps/s", whole.median, at_least=THESIS_TARGET_STEPS_PER_S)
    section.ratio("liver-gan loop / thesis pipeline (num_workers=2)", ours, pipeline[2], at_least=4.0)
    section.ratio("liver-gan loop / matmul-only limit", ours, limit, at_least=0.70)
    section.ratio("liver-gan train() / matmul-only limit", whole, limit, at_least=0.70)
    section.ratio("liver-gan train(), thesis cadence / matmul-only limit", thesis_cadence, limit, at_least=0.70)
    section.ratio("in-memory thesis loop / thesis pipeline (num_workers=2)", in_memory, pipeline[2])
    section.ratio("liver-gan loop / in-memory thesis loop", ours, in_memory)
    section.notes.append(
        f"thesis pipeline: the 512x512 PNGs of `{shlex.join(export_command(workdir))}`, "
        f"hard-linked up to {THESIS_SLICES} files so that an epoch has {THESIS_STEPS_PER_EPOCH} steps; "
        f"the in-memory loops draw from the default phantom's 64x64 tumor slices repeated to {THESIS_SLICES}"
    )
    return section, ours, images


OPTIMIZER_LIMITS = {
    "for_loop": "one small kernel per tensor and operation: Python and dispatch overhead",
    "foreach": "a few passes over all parameters and both moments: memory bandwidth",
    "fused": "one pass over parameters, gradients and moments: memory bandwidth",
    "auto": "what liver-gan picks by default",
}


def benchmark_optimizers(workdir: Path, quick: bool, repeats: int) -> Section:
    """One GAN step's two optimizer steps (G and D), per implementation liver-gan can select."""
    section = Section("Adam per GAN step (G and D optimizers, Table-2 MLP, 7.1 M parameters)")
    steps = steps_for("optimizer", quick)
    figures = {}
    for implementation, limit in OPTIMIZER_LIMITS.items():
        cfg = thesis_config(workdir, f"optimizer.implementation={implementation}")
        generator, discriminator = build_gan(cfg)
        for parameter in [*generator.parameters(), *discriminator.parameters()]:
            parameter.grad = torch.randn_like(parameter)
        optimizer_g, optimizer_d = build_optimizers(cfg.optimizer, generator, discriminator, CPU)
        label = f"optimizer.implementation={implementation}"
        if implementation == "auto":
            label += f" (resolves to {resolved_implementation(optimizer_g)})"
        announce(label)
        step_rates = time_loop(repeated(lambda g=optimizer_g, d=optimizer_d: (g.step(), d.step())), steps, repeats)
        milliseconds = tuple(1000 / rate for rate in step_rates)
        figures[implementation] = section.add(
            Figure(label, "ms/step", milliseconds, limit=limit, higher_is_better=False)
        )
    section.ratio("for-loop / fused (time per step)", figures["for_loop"], figures["fused"])
    section.ratio("foreach / fused (time per step)", figures["foreach"], figures["fused"])
    section.notes.append("the thesis used torch.optim.Adam's default, which is the for-loop implementation on the CPU")
    return section


def resolved_implementation(optimizer: torch.optim.Optimizer) -> str:
    if optimizer.defaults.get("fused"):
        return "fused"
    return "foreach" if optimizer.defaults.get("foreach") else "for_loop"


def benchmark_bf16(workdir: Path, images: torch.Tensor, fp32: Figure, quick: bool, repeats: int) -> Section:
    section = Section("Optional: bf16 autocast on the CPU (not the default; never for experiment=thesis)")
    section.extra_columns = (PROJECTION_COLUMN,)
    section.add(fp32, projected(fp32))
    cfg = thesis_config(workdir)
    bf16 = measure_rate(
        section,
        "liver-gan loop, torch.autocast(cpu, bfloat16)",
        "bf16 GEMMs (AVX512-BF16) plus casts of the fp32 weights every step",
        lambda: time_loop(liver_gan_loop(cfg, images, autocast=True), steps_for("liver_gan", quick), repeats),
    )
    section.ratio("bf16 / fp32 steps/s", bf16, fp32)
    section.notes.append(
        "measured through loop.py's train_step with a bf16 autocast; trainer.amp itself accepts CUDA only"
    )
    return section


def benchmark_dcgan(workdir: Path, quick: bool, repeats: int) -> Section:
    section = Section("DCGAN training images/s (batch 64, BCE, fused Adam, CPU fp32)")
    for resolution in (64, 128):
        cfg = compose_config(
            ["model=dcgan", f"dataset.resolution={resolution}", "trainer.device=cpu", *workdir_overrides(workdir)]
        )
        images = torch.rand(4 * THESIS_BATCH, 1, resolution, resolution) * 2 - 1
        announce(f"DCGAN {resolution}x{resolution}")
        step_rates = time_loop(liver_gan_loop(cfg, images), steps_for(f"dcgan{resolution}", quick), repeats)
        section.add(
            Figure(
                f"DCGAN {resolution}x{resolution}, liver-gan loop",
                "images/s",
                tuple(rate * THESIS_BATCH for rate in step_rates),
                limit="convolutions (oneDNN) on 2 cores",
            )
        )
        section.unmeasured.append((f"DCGAN {resolution}x{resolution} on a GPU", GPU_NOT_MEASURED))
    return section


def benchmark_training(workdir: Path, quick: bool, repeats: int) -> list[Section]:
    thesis_run, ours, images = benchmark_thesis_run(workdir, quick, repeats)
    return [
        thesis_run,
        benchmark_optimizers(workdir, quick, repeats),
        benchmark_bf16(workdir, images, ours, quick, repeats),
        benchmark_dcgan(workdir, quick, repeats),
    ]
