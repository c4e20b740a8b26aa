"""The lesion inpainter (model=inpaint, lesion=learned) on this CPU: training images/s and fill time per lesion.

Training runs the inpainter family's step (``liver_gan/training/inpaint_step.py``: the U-Net's
fill, a PatchGAN step and a generator step with the L1 term) on random crops with a disc of
liver and a tumor in it, at the model's defaults.  Insertion runs ``Inpainter.fill``
(``liver_gan/lesions/learned.py``) on a 512x512 volume of 2.5 mm slices with a spherical lesion
of ``--diameter-mm`` in a large ellipsoidal liver: one crop per slice the lesion touches, cut,
filled and pasted back.  The weights are untrained: neither cost depends on them.

    python benchmarks/inpaint.py                  # 64-pixel crops
    python benchmarks/inpaint.py --resolution 128
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from omegaconf import DictConfig

from configs import compose_config

from liver_gan.lesions.learned import Inpainter
from liver_gan.training.inpaint_step import build_training

CPU = torch.device("cpu")
TRAIN_BATCH = 16
IN_PLANE, SLICES = 512, 40
SPACING = (0.8, 0.8, 2.5)  # mm, a typical portal-venous abdominal CT


def inpainter_config(resolution: int) -> DictConfig:
    return compose_config(
        ["model=inpaint", "dataset.crop=liver", "dataset.masks=true", f"dataset.resolution={resolution}", "trainer.device=cpu"]
    )


def training_crops(resolution: int) -> torch.Tensor:
    """(TRAIN_BATCH, 3, R, R) crops: noise for the CT, a disc of liver and a smaller disc of tumor, masks in {-1, 1}."""
    rows, cols = torch.meshgrid(torch.arange(resolution), torch.arange(resolution), indexing="ij")
    distance = ((rows - resolution / 2) ** 2 + (cols - resolution / 2) ** 2).sqrt()
    liver = (distance < resolution * 0.4).float() * 2 - 1
    tumor = (distance < resolution * 0.1).float() * 2 - 1
    ct = torch.rand(TRAIN_BATCH, 1, resolution, resolution) * 2 - 1
    return torch.cat([ct, liver.expand(TRAIN_BATCH, 1, -1, -1), tumor.expand(TRAIN_BATCH, 1, -1, -1)], dim=1)


def training_images_per_second(resolution: int, steps: int, repeats: int) -> list[float]:
    cfg = inpainter_config(resolution)
    torch.manual_seed(0)
    family = build_training(cfg, CPU)
    crops = training_crops(resolution)
    autocast = torch.autocast("cpu", enabled=False)
    family.step(crops, None, autocast)  # warm-up
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            family.step(crops, None, autocast)
        rates.append(steps * TRAIN_BATCH / (time.perf_counter() - start))
    return rates


def lesion_volume(diameter_mm: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """HU, lesion region and liver of a synthetic (X, Y, Z) volume: liver 110 HU with noise, fat outside."""
    grid = np.indices((IN_PLANE, IN_PLANE, SLICES)).astype(np.float32)
    mm = [axis * step for axis, step in zip(grid, SPACING)]
    centre = [IN_PLANE * 0.4 * SPACING[0], IN_PLANE * 0.5 * SPACING[1], SLICES / 2 * SPACING[2]]
    liver = sum(((axis - c) / r) ** 2 for axis, c, r in zip(mm, centre, (100, 80, 45))) <= 1
    region = sum((axis - c) ** 2 for axis, c in zip(mm, centre)) <= (diameter_mm / 2) ** 2
    rng = np.random.default_rng(0)
    hu = np.where(liver, 110.0, -100.0).astype(np.float32) + rng.normal(0, 15, liver.shape).astype(np.float32)
    return hu, region, liver


def fill_seconds(resolution: int, diameter_mm: float, repeats: int) -> tuple[list[float], int]:
    cfg = inpainter_config(resolution)
    generator, _ = build_training(cfg, CPU).networks().values()
    inpainter = Inpainter(generator, cfg, CPU)
    hu, region, liver = lesion_volume(diameter_mm)
    rng = np.random.default_rng(0)
    inpainter.fill(hu, region, liver, SPACING, rng)  # warm-up
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        inpainter.fill(hu, region, liver, SPACING, rng)
        seconds.append(time.perf_counter() - start)
    return seconds, int(region.any(axis=(0, 1)).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--diameter-mm", type=float, default=30.0)
    args = parser.parse_args()
    rates = training_images_per_second(args.resolution, args.steps, args.repeats)
    print(
        f"inpainter training at {args.resolution} px, batch {TRAIN_BATCH}, {torch.get_num_threads()} threads: "
        f"median {statistics.median(rates):.1f} images/s (repeats: {', '.join(f'{rate:.1f}' for rate in rates)})"
    )
    seconds, slices = fill_seconds(args.resolution, args.diameter_mm, args.repeats)
    print(
        f"learned fill of one {args.diameter_mm:g} mm lesion ({slices} slices of {IN_PLANE}x{IN_PLANE}) at "
        f"{args.resolution} px: median {statistics.median(seconds):.3f} s (repeats: {', '.join(f'{s:.3f}' for s in seconds)})"
    )


if __name__ == "__main__":
    main()
