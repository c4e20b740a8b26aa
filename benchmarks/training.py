"""Training speed of experiment=thesis, side by side, and what each step of the way buys.

Rows of the main table, all the Table-2 MLP at batch 64 on the CPU:

- the thesis's pipeline (thesis_pipeline.py), with DataLoader num_workers 2 and 0;
- the thesis's loop on the same images held as one in-memory tensor (only the data source changes);
- liver-gan's training loop: ``fit``'s inner loop as loop.py runs it (``BatchOrder`` batches by index,
  ``train_step``, the scalars summed on the device and read every ``trainer.log_every`` steps), on a
  training set of the thesis's size;
- liver-gan's ``train()`` end to end (``experiment=thesis``, eval off, ``trainer.max_steps``), its
  logging and epoch-end work included;
- the matmul-only limit (gemm_limit.py).

Every row takes turns with the others, repeat by repeat (``measure.take_turns``), so host drift cannot
bias their ratios.

All but the thesis pipeline (which reads its own 512x512 PNG export) train on a thesis-sized
phantom: about the thesis's 6,410 training tumor slices, so that ``train()`` runs epochs of the
thesis's ~101 steps, with its checkpoint and grid cadence.

Every steps/s figure is projected onto the full thesis run, 1000 epochs of ceil(6410 / 64) steps.
Further tables: the optimizer step per implementation, bf16 autocast, every model's images/s on
the CPU at 64 and 128 px (``--only models``), and every
model family's steps/s on a GPU at 64, 128 and 256 px (rows that say so where no GPU is at hand).
"""

from __future__ import annotations

import math
import shlex
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from omegaconf import DictConfig

from liver_gan.data.dataset import prepare_dataset
from liver_gan.device import training_autocast
from liver_gan.models.registry import build_gan
from liver_gan.training.family import build_family
from liver_gan.training.gan_step import GAN, LOGGED_SCALARS, train_step
from liver_gan.training.loop import train
from liver_gan.training.state import BatchOrder, ScalarSums
from liver_gan.training.optim import build_optimizers

from configs import compose_config, workdir_overrides
from gemm_limit import gan_step_gemms, gemm_runner, step_gflop
from measure import GPU_NOT_MEASURED, Figure, Section, announce, clock, format_duration, take_turns
from thesis_pipeline import (
    THESIS_BATCH,
    THESIS_SLICES,
    THESIS_STEPS_PER_EPOCH,
    THESIS_TOTAL_STEPS,
    export_command,
    thesis_imagefolder,
    thesis_models,
    thesis_training,
    thesis_pipeline_rate,
)

CPU = torch.device("cpu")
STEPS_PER_S = "steps/s"
PROJECTION_COLUMN = "full thesis run, 101,000 steps: median (fastest - slowest)"
THESIS_TARGET_STEPS_PER_S = 25.0
# 640 phantom volumes at 64x64 in-plane give ~6,400 training tumor slices (5,998 for 600 here),
# written once per work dir in about a minute.
THESIS_SIZED_PHANTOM = ("dataset.phantom.num_volumes=640", "dataset.phantom.in_plane=64")

# Steps per timed repeat: (default run, --quick).
STEPS = {
    "thesis_pipeline": (THESIS_STEPS_PER_EPOCH, 12),
    "in_memory": (200, 30),
    "liver_gan": (400, 50),
    "end_to_end": (1000, 50),  # long enough that its first steps' warm-up weighs little
    "limit": (200, 30),
    "optimizer": (50, 10),
    "models64": (10, 3),
    "models128": (5, 2),
    "gpu": (50, 10),
}
# CPU rows (issue 14): each model as its group option (or preset) gives it, the GANs with BCE and no
# augmentation (as measured in BENCHMARKS.md; each GAN model's own defaults, non-saturating + R1 and
# DiffAugment, add R1's double backward and the augmentation).
CPU_GAN_BASELINE = ("loss=bce", "augment=none")
CPU_MODELS = (
    ("model=mlp", ("~experiment", "model=mlp", *CPU_GAN_BASELINE)),
    ("model=dcgan_small (the default run's)", ("~experiment", "model=dcgan_small", *CPU_GAN_BASELINE)),
    ("model=dcgan", ("~experiment", "model=dcgan", *CPU_GAN_BASELINE)),
    ("model=stylegan2", ("~experiment", "model=stylegan2", *CPU_GAN_BASELINE)),
    ("experiment=stylegan2 (DiffAugment, lazy R1, EMA not in the step)", ("experiment=stylegan2",)),
    ("model=ddpm", ("~experiment", "model=ddpm")),
)
# GPU rows (issue 17): steps/s of each model family at these resolutions, batch 64, fp32.
GPU_MODELS = ("mlp", "dcgan", "stylegan2", "ddpm")
GPU_RESOLUTIONS = (64, 128, 256)


def steps_for(name: str, quick: bool) -> int:
    return STEPS[name][1 if quick else 0]


def thesis_config(workdir: Path, *overrides: str) -> DictConfig:
    """``liver-gan-train experiment=thesis`` on the CPU on the thesis-sized phantom, with evaluation off."""
    return compose_config(
        [
            "experiment=thesis",
            "trainer.device=cpu",
            "eval.enabled=false",
            *workdir_overrides(workdir, phantom="phantom_thesis_sized"),
            *THESIS_SIZED_PHANTOM,
            *overrides,
        ]
    )


def thesis_sized(images: torch.Tensor) -> torch.Tensor:
    """Exactly the thesis's 6,410 slices (the phantom's tumor slices, cycled if short): 101 steps an epoch."""
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


def liver_gan_loop(
    cfg: DictConfig, images: torch.Tensor, autocast: bool = False, device: torch.device = CPU
) -> Callable[[int], None]:
    """``fit``'s inner loop from loop.py on ``images`` (already on ``device``), without the progress
    bar and TensorBoard writes."""
    torch.manual_seed(cfg.seed)
    generator, discriminator = (network.to(device) for network in build_gan(cfg))
    optimizers = build_optimizers(cfg.optimizer, generator, discriminator, device)
    gan = GAN(generator, discriminator, *optimizers, cfg.loss)
    order = BatchOrder(len(images), cfg.trainer.batch_size, cfg.seed, device)
    window = ScalarSums(LOGGED_SCALARS, device)
    autocast_mode = torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast)
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
    measure = timed_rate(run, steps)
    return tuple(measure() for _ in range(repeats))


def timed_rate(run: Callable[[int], None], steps: int) -> Callable[[], float]:
    """A measurement of ``run``'s steps/s over ``steps`` steps; warms ``run`` up (10 steps) now."""
    run(min(steps, 10))

    def measure() -> float:
        start = clock()
        run(steps)
        return steps / (clock() - start)

    return measure


def add_rate(section: Section, name: str, limit: str, values: tuple[float, ...]) -> Figure:
    """A steps/s figure with the full thesis run projected from it."""
    figure = Figure(name, STEPS_PER_S, values, limit=limit)
    return section.add(figure, projected(figure))


def projected(figure: Figure) -> str:
    """The full thesis run at this figure's median (and its min-max range)."""
    median = format_duration(THESIS_TOTAL_STEPS / figure.median)
    fastest, slowest = (format_duration(THESIS_TOTAL_STEPS / rate) for rate in (figure.high, figure.low))
    return f"{median} ({fastest} - {slowest})"


def end_to_end_rate(workdir: Path, max_steps: int, overheads: list[float]) -> Callable[[], float]:
    """A measurement of ``train()`` as ``liver-gan-train experiment=thesis`` runs it, capped at ``max_steps``.

    Each call trains in a fresh run dir and returns metrics.json's images_per_second in 64-image
    steps (an epoch's last, smaller batch would otherwise count as a whole step); the wall time
    outside train_seconds is appended to ``overheads``.  With thesis-length epochs the first
    checkpoint (every 20 epochs) and grid (every 30) come after 2,020 and 3,030 steps, so the
    capped run holds neither, as the thesis run's first 2,020 steps do not; one ~85 MB
    checkpoint per 2,020 steps is well under 1 % of the run.
    """
    cfg = thesis_config(workdir, f"trainer.max_steps={max_steps}")

    def measure() -> float:
        run_dir = Path(tempfile.mkdtemp(prefix="train-", dir=workdir))
        try:
            start = clock()
            metrics = train(cfg, run_dir)
            wall = clock() - start
        finally:
            shutil.rmtree(run_dir)
        overheads.append(wall - metrics["train_seconds"])
        return metrics["images_per_second"] / THESIS_BATCH

    return measure


def benchmark_thesis_run(workdir: Path, quick: bool, repeats: int) -> tuple[Section, Figure, tuple[float, ...]]:
    """The main table; also returns the fp32 loop's figure and the bf16 loop's rates, timed in turns with it."""
    section = Section("Training: experiment=thesis (Table-2 MLP, batch 64, CPU fp32)")
    section.extra_columns = (PROJECTION_COLUMN,)
    root = thesis_imagefolder(workdir)
    cfg = thesis_config(workdir)
    tumor_slices = prepare_dataset(cfg.dataset, cfg.seed).train.images
    images = thesis_sized(tumor_slices)
    generator, discriminator = thesis_models()
    gemms = gan_step_gemms(generator, discriminator, THESIS_BATCH)
    train_overheads: list[float] = []
    announce("the thesis pipeline, the in-memory loops (fp32, bf16), train() and the matmul-only limit, taking turns")
    pipeline_steps = steps_for("thesis_pipeline", quick)
    turns = take_turns(
        {
            "pipeline2": thesis_pipeline_rate(root, 2, pipeline_steps),
            "pipeline0": thesis_pipeline_rate(root, 0, pipeline_steps),
            "in_memory": timed_rate(in_memory_thesis_loop(images), steps_for("in_memory", quick)),
            "ours": timed_rate(liver_gan_loop(cfg, images), steps_for("liver_gan", quick)),
            "bf16": timed_rate(liver_gan_loop(cfg, images, autocast=True), steps_for("liver_gan", quick)),
            "train": end_to_end_rate(workdir, steps_for("end_to_end", quick), train_overheads),
            "limit": timed_rate(repeated(gemm_runner(gemms)), steps_for("limit", quick)),
        },
        repeats,
    )
    pipeline = {
        workers: add_rate(
            section,
            f"thesis pipeline, num_workers={workers}",
            "PNG decode + Resize of 64 512x512 images per step; the for-loop Adam",
            turns[f"pipeline{workers}"],
        )
        for workers in (2, 0)
    }
    in_memory = add_rate(
        section,
        "thesis loop, data as one in-memory tensor",
        "a second G forward per step, D weight gradients in the G step, the for-loop Adam",
        turns["in_memory"],
    )
    ours = add_rate(
        section,
        "liver-gan loop (loop.py: BatchOrder + train_step + ScalarSums)",
        "the GEMMs plus per-op overhead (bias, activations, loss, autograd) and the fused Adam",
        turns["ours"],
    )
    whole = add_rate(
        section,
        f"liver-gan train() end to end, trainer.max_steps={steps_for('end_to_end', quick)}",
        "as the loop row, plus train()'s own work per step and per epoch (progress, log windows, "
        "epoch-end divergence check) and its first steps' warm-up",
        turns["train"],
    )
    limit = add_rate(
        section,
        f"matmul-only limit ({step_gflop(gemms):.2f} GFLOP per step)",
        "the GEMMs of one step alone: BLAS throughput on these cores",
        turns["limit"],
    )
    section.notes.append(f"matmul-only limit: {limit.median * step_gflop(gemms):.0f} GFLOP/s at its median")
    section.notes.append(
        "every row of this table took turns with the others, one repeat of each per round, so their "
        "ratios compare the same minutes of this host"
    )
    section.notes.append(
        f"train() ran epochs of {math.ceil(len(tumor_slices) / THESIS_BATCH)} steps ({len(tumor_slices):,} "
        f"training tumor slices); its steps/s is metrics.json's images_per_second / {THESIS_BATCH}; it spent "
        f"{format_duration(min(train_overheads))} - {format_duration(max(train_overheads))} per run outside "
        "its train_seconds (warm dataset load, model and TensorBoard set-up, the final grid and checkpoint)"
    )
    section.unmeasured.append(("liver-gan loop on a GPU", GPU_NOT_MEASURED))

    section.check("liver-gan loop steps/s", ours.median, at_least=THESIS_TARGET_STEPS_PER_S)
    section.check("liver-gan train() steps/s", whole.median, at_least=THESIS_TARGET_STEPS_PER_S)
    section.ratio("liver-gan loop / thesis pipeline (num_workers=2)", ours, pipeline[2], at_least=4.0)
    section.ratio("liver-gan loop / matmul-only limit", ours, limit, at_least=0.70)
    section.ratio("liver-gan train() / matmul-only limit", whole, limit, at_least=0.70)
    section.ratio("in-memory thesis loop / thesis pipeline (num_workers=2)", in_memory, pipeline[2])
    section.ratio("liver-gan loop / in-memory thesis loop", ours, in_memory)
    section.notes.append(
        f"thesis pipeline: the 512x512 PNGs of `{shlex.join(export_command(workdir))}`, "
        f"hard-linked up to {THESIS_SLICES} files so that an epoch has {THESIS_STEPS_PER_EPOCH} steps; "
        f"the in-memory loops draw from the 64x64 tumor slices of the thesis-sized phantom ("
        f"{shlex.join(THESIS_SIZED_PHANTOM)}), cycled to exactly {THESIS_SLICES}"
    )
    return section, ours, turns["bf16"]


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
        figures[implementation] = section.add(Figure(label, "ms/step", milliseconds, limit=limit))
    section.ratio("for-loop / fused (time per step)", figures["for_loop"], figures["fused"])
    section.ratio("foreach / fused (time per step)", figures["foreach"], figures["fused"])
    section.notes.append("the thesis used torch.optim.Adam's default, which is the for-loop implementation on the CPU")
    return section


def resolved_implementation(optimizer: torch.optim.Optimizer) -> str:
    if optimizer.defaults.get("fused"):
        return "fused"
    return "foreach" if optimizer.defaults.get("foreach") else "for_loop"


def benchmark_bf16(fp32: Figure, bf16_rates: tuple[float, ...]) -> Section:
    """The bf16 autocast loop, timed in turns with the fp32 one (see :func:`benchmark_thesis_run`)."""
    section = Section("Optional: bf16 autocast on the CPU (not the default; never for experiment=thesis)")
    section.extra_columns = (PROJECTION_COLUMN,)
    section.add(fp32, projected(fp32))
    bf16 = add_rate(
        section,
        "liver-gan loop, torch.autocast(cpu, bfloat16)",
        "bf16 GEMMs (AVX512-BF16) plus casts of the fp32 weights every step",
        bf16_rates,
    )
    section.ratio("bf16 / fp32 steps/s", bf16, fp32)
    section.notes.append(
        "measured through loop.py's train_step with a bf16 autocast, taking turns with the fp32 loop; "
        "trainer.amp itself accepts CUDA only"
    )
    return section


def benchmark_models(workdir: Path, quick: bool, repeats: int) -> Section:
    """Training images/s of every model family on this CPU at 64 and 128 px (issue 14), through the
    shared loop's family step, each at its default width and loss, as ``model=NAME`` gives it."""
    section = Section("Training images/s per model on the CPU (batch 64, fp32, each model's defaults, the GANs with BCE)")
    for resolution in (64, 128):
        images = torch.rand(4 * THESIS_BATCH, 1, resolution, resolution) * 2 - 1
        for label, overrides in CPU_MODELS:
            cfg = compose_config(
                [
                    *overrides,
                    f"dataset.resolution={resolution}",
                    "trainer.device=cpu",
                    f"trainer.batch_size={THESIS_BATCH}",
                    *workdir_overrides(workdir),
                ]
            )
            name = f"{label} at {resolution}x{resolution}"
            announce(name)
            loop = family_loop(cfg, images, CPU)
            step_rates = time_loop(loop, steps_for(f"models{resolution}", quick), repeats)
            limit = "the denoising U-Net's forward and backward" if "ddpm" in label else "G and D forward and backward"
            section.add(Figure(name, "images/s", tuple(rate * THESIS_BATCH for rate in step_rates), limit=limit))
    return section


def family_loop(cfg: DictConfig, images: torch.Tensor, device: torch.device, amp: bool = False) -> Callable[[int], None]:
    """The shared loop's steps of ``cfg``'s model family (training/family.py) on ``images``, already on
    ``device``, with batches drawn as the loop draws them, under bf16 autocast when ``amp``."""
    torch.manual_seed(cfg.seed)
    family = build_family(cfg, device)
    order = BatchOrder(len(images), cfg.trainer.batch_size, cfg.seed, device)
    autocast = training_autocast(device, amp)

    def batches() -> Iterator[torch.Tensor]:
        while True:
            yield from order.epoch()

    stream = batches()
    return repeated(lambda: family.step(images[next(stream)], None, autocast))


def benchmark_gpu(workdir: Path, quick: bool, repeats: int) -> Section:
    """Each model family's training steps/s on the first GPU, or rows saying that none was at hand."""
    section = Section("Training on a GPU (batch 64, BCE, no augmentation, fused Adam, fp32, each model's default width)")
    for model in GPU_MODELS:
        for resolution in GPU_RESOLUTIONS:
            name = f"model={model} at {resolution}x{resolution}"
            if not torch.cuda.is_available():
                section.unmeasured.append((name, GPU_NOT_MEASURED))
                continue
            device = torch.device("cuda")
            cfg = compose_config(
                [
                    "~experiment",
                    f"model={model}",
                    *([] if model == "ddpm" else CPU_GAN_BASELINE),  # ddpm has no loss and no augmentation
                    f"dataset.resolution={resolution}",
                    "trainer.device=cuda",
                    f"trainer.batch_size={THESIS_BATCH}",
                    *workdir_overrides(workdir),
                ]
            )
            images = (torch.rand(4 * THESIS_BATCH, 1, resolution, resolution) * 2 - 1).to(device)
            announce(f"{name} on {torch.cuda.get_device_name(device)}")
            loop = family_loop(cfg, images, device)
            limit = "the denoising U-Net's forward and backward" if model == "ddpm" else "G and D forward and backward"
            section.add(Figure(name, STEPS_PER_S, time_loop(loop, steps_for("gpu", quick), repeats), limit=limit))
    return section


def benchmark_training(workdir: Path, quick: bool, repeats: int) -> list[Section]:
    thesis_run, ours, bf16_rates = benchmark_thesis_run(workdir, quick, repeats)
    return [
        thesis_run,
        benchmark_optimizers(workdir, quick, repeats),
        benchmark_bf16(ours, bf16_rates),
        benchmark_gpu(workdir, quick, repeats),
    ]
