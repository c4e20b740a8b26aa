"""The thesis's training pipeline, rebuilt as the baseline every training figure is compared with.

What the thesis did (section 6.4), step by step:

1. slices exported as 512x512 PNG files in an ImageFolder layout — here
   ``liver-gan-prepare export=imagefolder dataset.resolution=512`` on a 512x512 phantom;
2. ``torchvision.datasets.ImageFolder`` with Grayscale, Resize(64), ToTensor, Normalize(0.5, 0.5);
3. ``DataLoader(batch_size=64, shuffle=True)``, a fresh iterator (and fresh workers) each epoch;
4. the Table-2 MLP GAN, a sigmoid on D and ``nn.BCELoss``, ``torch.optim.Adam(lr=2e-4)`` with
   PyTorch's defaults (betas (0.9, 0.999), the for-loop implementation on CPU);
5. a plain loop in the style of the PyTorch GAN tutorials the thesis followed: D on a real and a
   detached fake batch, then G on a fresh fake batch, ``zero_grad()`` and ``.item()`` every step.

An epoch of the thesis had ceil(6,410 / 64) = 101 steps.  The phantom yields fewer tumor slices,
so the ImageFolder here hard-links the exported PNGs round-robin up to 6,410 files: every step
decodes 64 real 512x512 PNGs, and every epoch has the thesis's length (worker start-up included).
"""

from __future__ import annotations

import math
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from liver_gan.atomic import build_once
from liver_gan.models.mlp import build_mlp_gan
from liver_gan.models.schema import MLPConfig

from measure import announce

THESIS_SLICES = 6410
THESIS_BATCH = 64
THESIS_EPOCHS = 1000
THESIS_PNG_SIZE = 512
THESIS_RESOLUTION = 64
THESIS_LR = 2e-4
THESIS_STEPS_PER_EPOCH = math.ceil(THESIS_SLICES / THESIS_BATCH)
THESIS_TOTAL_STEPS = THESIS_EPOCHS * THESIS_STEPS_PER_EPOCH

# A phantom at the thesis's PNG size; a few volumes give enough distinct slices to cycle through.
EXPORT_PHANTOM = ("dataset.phantom.in_plane=512", "dataset.phantom.num_volumes=4")

Step = Callable[[torch.Tensor], tuple[float, float]]


def console_script(name: str) -> str:
    """A liver-gan command from the running interpreter's environment, activated or not."""
    beside_python = Path(sys.executable).with_name(name)
    found = str(beside_python) if beside_python.exists() else shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is not installed; run pip install -e . first")
    return found


def export_command(workdir: Path) -> list[str]:
    """``liver-gan-prepare export=imagefolder`` of the 512x512 tumor slices of a 512x512 phantom."""
    return [
        "liver-gan-prepare",
        "export=imagefolder",
        "dataset=phantom",
        f"dataset.root={workdir / 'phantom512'}",
        f"dataset.cache_dir={workdir / 'cache'}",
        f"dataset.resolution={THESIS_PNG_SIZE}",
        "dataset.subset=tumor",
        *EXPORT_PHANTOM,
        f"hydra.run.dir={workdir / 'thesis_export'}",
    ]


def export_thesis_pngs(workdir: Path) -> Path:
    """Run :func:`export_command`; return its ImageFolder directory."""
    command = export_command(workdir)
    announce("exporting the thesis's PNGs: " + shlex.join(command))
    subprocess.run([console_script(command[0]), *command[1:]], check=True, stdout=subprocess.DEVNULL)
    return workdir / "thesis_export" / "imagefolder"


def thesis_imagefolder(workdir: Path) -> Path:
    """An ImageFolder root ``<workdir>/thesis_imagefolder/tumor/`` of the thesis's 6,410 PNGs.

    Hard links to the exported PNGs, cycled, so the epoch length matches the thesis's.  Made
    once per work dir, under a lock and atomically, so concurrent benchmark runs share it.
    """
    root = workdir / "thesis_imagefolder"

    def link(building: Path) -> None:
        pngs = sorted(export_thesis_pngs(workdir).glob("*/tumor/*.png"))
        if not pngs:
            raise RuntimeError(f"{shlex.join(export_command(workdir))} wrote no tumor PNGs")
        (building / "tumor").mkdir()
        for index in range(THESIS_SLICES):
            os.link(pngs[index % len(pngs)], building / "tumor" / f"{index:05d}.png")

    build_once(root, link)
    return root


def thesis_loader(root: Path, num_workers: int) -> DataLoader:
    transform = transforms.Compose(
        [
            transforms.Grayscale(),
            transforms.Resize(THESIS_RESOLUTION),
            transforms.ToTensor(),
            transforms.Normalize((0.5,), (0.5,)),
        ]
    )
    return DataLoader(
        datasets.ImageFolder(str(root), transform=transform),
        batch_size=THESIS_BATCH,
        shuffle=True,
        num_workers=num_workers,
    )


def thesis_models() -> tuple[nn.Module, nn.Module]:
    table2 = MLPConfig()
    return build_mlp_gan(
        latent_dim=table2.latent_dim,
        conditional=False,
        generator_widths=list(table2.generator_widths),
        discriminator_widths=list(table2.discriminator_widths),
        resolution=THESIS_RESOLUTION,
        num_classes=0,
    )


def thesis_step(
    generator: nn.Module,
    discriminator: nn.Module,
    optimizer_g: torch.optim.Optimizer,
    optimizer_d: torch.optim.Optimizer,
) -> Step:
    """One thesis-style GAN step on a real batch; returns the losses read back with ``.item()``."""
    criterion = nn.BCELoss()
    latent_dim = generator.latent_dim

    def step(real: torch.Tensor) -> tuple[float, float]:
        batch = real.size(0)
        real_labels = torch.ones(batch)
        fake_labels = torch.zeros(batch)

        optimizer_d.zero_grad()
        d_loss_real = criterion(torch.sigmoid(discriminator(real)), real_labels)
        fake = generator(torch.randn(batch, latent_dim))
        d_loss_fake = criterion(torch.sigmoid(discriminator(fake.detach())), fake_labels)
        d_loss = d_loss_real + d_loss_fake
        d_loss.backward()
        optimizer_d.step()

        optimizer_g.zero_grad()
        fake = generator(torch.randn(batch, latent_dim))
        g_loss = criterion(torch.sigmoid(discriminator(fake)), real_labels)
        g_loss.backward()
        optimizer_g.step()
        return d_loss.item(), g_loss.item()

    return step


def thesis_training(optimizer_options: dict | None = None) -> Step:
    """Fresh Table-2 models with the thesis's Adam; ``optimizer_options`` varies the implementation."""
    generator, discriminator = thesis_models()
    options = dict(optimizer_options or {})
    optimizer_g = torch.optim.Adam(generator.parameters(), lr=THESIS_LR, **options)
    optimizer_d = torch.optim.Adam(discriminator.parameters(), lr=THESIS_LR, **options)
    return thesis_step(generator, discriminator, optimizer_g, optimizer_d)


def epoch_batches(loader: DataLoader, steps: int) -> Iterator[torch.Tensor]:
    """The first ``steps`` batches of one epoch (a fresh iterator, as ``for x, _ in loader`` makes)."""
    for index, (images, _) in enumerate(loader):
        if index == steps:
            return
        yield images


def thesis_pipeline_rate(root: Path, num_workers: int, steps: int) -> Callable[[], float]:
    """A measurement of the whole pipeline's steps/s over one epoch (or its first ``steps`` steps).

    Builds the loader and models and warms them up (5 steps) now; each call times one pass.
    """
    torch.manual_seed(0)
    loader = thesis_loader(root, num_workers)
    step = thesis_training()
    for images in epoch_batches(loader, min(steps, 5)):
        step(images)

    def measure() -> float:
        start = time.perf_counter()
        done = 0
        for images in epoch_batches(loader, steps):
            step(images)
            done += 1
        return done / (time.perf_counter() - start)

    return measure
