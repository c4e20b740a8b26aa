"""model=ddpm on this CPU (issue 15): training images/s, and sampling images/s per DDIM step count.

Training runs the diffusion family's step (``liver_gan/training/diffusion_step.py``: one U-Net
forward and backward and an Adam step per batch) on random images at the model's default size;
sampling runs ``DiffusionModel.sample`` (one U-Net pass per DDIM step, guidance off) at 10, 20
and 50 steps.  Sampling cost is linear in the step count, so the images/s at 50 steps sets what an
evaluation costs: it draws up to 2048 images with ``model.sample_steps`` steps each.

    python benchmarks/run.py --only ddpm --quick   # 32x32 (the defaults' U-Net), a few minutes
    python benchmarks/run.py --only ddpm           # 64x64, the default model
"""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig

from configs import compose_config, workdir_overrides
from measure import GPU_NOT_MEASURED, Figure, Section, announce, format_duration, rates, repeat_seconds

from liver_gan.models.ddpm import DiffusionModel
from liver_gan.training.diffusion_step import build_training

CPU = torch.device("cpu")
DDIM_STEPS = (10, 20, 50)
TRAIN_BATCH = 16
SAMPLE_BATCH = 8
EVALUATION_SAMPLES = 2048  # the most an evaluation draws (eval.num_samples=null)


def ddpm_config(workdir: Path, resolution: int, *overrides: str) -> DictConfig:
    return compose_config(
        ["model=ddpm", f"dataset.resolution={resolution}", "trainer.device=cpu", *workdir_overrides(workdir), *overrides]
    )


def training_rates(cfg: DictConfig, steps: int, repeats: int) -> tuple[float, ...]:
    """Training images/s of ``steps`` diffusion steps on batches of ``TRAIN_BATCH``, per repeat."""
    torch.manual_seed(cfg.seed)
    family = build_training(cfg, CPU)
    resolution = cfg.dataset.resolution
    images = torch.rand(TRAIN_BATCH, 1, resolution, resolution) * 2 - 1
    autocast = torch.autocast("cpu", enabled=False)

    def run() -> None:
        for _ in range(steps):
            family.step(images, None, autocast)

    return rates(steps * TRAIN_BATCH, repeat_seconds(run, repeats))


def sampling_model(cfg: DictConfig) -> DiffusionModel:
    torch.manual_seed(cfg.seed)
    return build_training(cfg, CPU).generator.eval()


def sampling_rates(model: DiffusionModel, ddim_steps: int, repeats: int) -> tuple[float, ...]:
    """Sampling images/s of a batch of ``SAMPLE_BATCH`` with ``ddim_steps`` DDIM steps, per repeat."""
    return rates(SAMPLE_BATCH, repeat_seconds(lambda: model.sample(SAMPLE_BATCH, seed=0, sample_steps=ddim_steps), repeats))


def benchmark_ddpm(workdir: Path, quick: bool, repeats: int) -> Section:
    resolution = 32 if quick else 64
    cfg = ddpm_config(workdir, resolution)
    model = cfg.model
    section = Section(
        f"model=ddpm on the CPU, {resolution}x{resolution} (U-Net channels {list(model.channels)}, "
        f"{model.num_train_timesteps} training timesteps, fp32)"
    )
    announce(f"ddpm training {resolution}x{resolution}")
    section.add(
        Figure(
            f"training, batch {TRAIN_BATCH}",
            "images/s",
            training_rates(cfg, 2 if quick else 5, repeats),
            limit="U-Net forward + backward (convolutions, attention at the lowest level) on 2 cores",
        )
    )
    sampler = sampling_model(cfg)
    for steps in DDIM_STEPS:
        announce(f"ddpm sampling, {steps} DDIM steps")
        values = sampling_rates(sampler, steps, repeats)
        figure = section.add(
            Figure(f"DDIM sampling, {steps} steps, batch {SAMPLE_BATCH}", "images/s", values, limit="one U-Net pass per step")
        )
        if steps == cfg.model.sample_steps:
            section.notes.append(
                f"an evaluation's {EVALUATION_SAMPLES} samples at model.sample_steps={steps}: about "
                f"{format_duration(EVALUATION_SAMPLES / figure.median)} of sampling at this rate"
            )
    section.notes.append("classifier-free guidance (model.guidance_scale != 1) doubles each sampling step's batch")
    section.unmeasured.append((f"ddpm {resolution}x{resolution} on a GPU", GPU_NOT_MEASURED))
    return section
