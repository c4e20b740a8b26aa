"""``liver-gan-sample checkpoint=RUN_DIR_OR_PT``: write generated slices as PNGs and a .npy stack,
or as NIfTI files for segmentation tools (``format=``).

An unconditional model writes the stack ``samples``; a conditional one writes ``num_samples``
images of each class, stacks ``healthy`` and ``tumor``, from the same noise vectors, so
``healthy/00003.png`` and ``tumor/00003.png`` differ only in the label.  Images are the model's
own resolution.

- ``format=png`` (default): ``<out>/<stack>/*.png`` and ``<out>/<stack>.npy``, float32
  (N, 1, R, R) in [-1, 1]; ``npy``: the stacks only.  A model trained with ``dataset.masks=true``
  also writes each stack's label maps, ``<out>/<stack>_labels.npy`` (uint8 (N, R, R), 0/1/2)
  and with png ``<out>/<stack>_labels/*.png`` (pixel values 0, 1, 2).
- ``format=nifti|nnunet|lits``: ``<out>/nifti/``, ``<out>/<nnunet_dataset>/`` or ``<out>/lits/``
  in Hounsfield units with the source data's spacing (liver_gan/data/segmentation_export.py).
  ``nnunet`` adds the run's real validation slices and a ``splits_final.json`` of one fold that
  trains on the synthetic cases and validates on those.
- ``seeds=0-63`` (as stylegan2-ada's generate.py): one image per seed instead of ``num_samples``
  from ``seed``; seed s gives the same image whatever range it is asked in.
- ``interpolate=[0,7] interpolate_steps=8``: a latent walk, 8 images from seed 0's z to seed 7's
  (slerp, both ends included) per pair of seeds, and its grid ``<out>/<stack>_interpolation.png``.
- ``truncation_psi=0.7`` (GANs): nearer-average images, less variety (StyleGAN2 in w, DCGAN/MLP in z).
- ``reject_memorised=true``: near-copies of training slices are replaced by new draws (at most
  ``reject_max_draws``), so the stacks hold the number asked; it says how many it rejected.
- Nothing in ``out`` is replaced (liver_gan.atomic.write_export): a name already taken there is
  refused, and ``overwrite=true`` replaces only what an earlier export wrote.
A diffusion model draws with its run's ``model.sample_steps`` DDIM steps, or ``sample_steps=N``.
"""

from __future__ import annotations

import itertools
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from liver_gan.atomic import atomic_write, write_export
from liver_gan.cli import report_user_errors, scripts
from liver_gan.config import SampleFormat
from liver_gan.data.labels import CLASS_NAMES
from liver_gan.data.masks import ct, has_masks, label_maps
from liver_gan.data.segmentation_export import EXPORTS, source_spacing
from liver_gan.device import resolve_device
from liver_gan.errors import LiverGanError
from liver_gan.images import image_grid, write_grid_png, write_label_pngs, write_png_folder
from liver_gan.metrics.memorisation import reject_memorised, validation_threshold
from liver_gan.models.ddpm import DiffusionModel, with_sample_steps
from liver_gan.sampling import generate, generate_from_latents, parse_seeds, seed_latents, walk_latents
from liver_gan.runs import given_paths, load_generator, run_dataset


@dataclass(frozen=True)
class MemorisationFilter:
    """The run's training slices, and the pixel RMS distance below which a sample counts as a copy."""

    train_images: Tensor
    threshold: float


def memorisation_filter(cfg: DictConfig, train_cfg: DictConfig) -> MemorisationFilter:
    """The run's own training slices (same data and patient split) and the threshold to apply.

    Without ``memorisation_threshold`` the threshold is the smallest distance from any real
    validation slice to the training set: a dropped sample is nearer a training slice than any
    unseen patient's slice is.
    """
    dataset = run_dataset(train_cfg, **given_paths(cfg.dataset))
    threshold = cfg.memorisation_threshold
    if threshold is None:
        threshold = validation_threshold(ct(dataset.train.images), ct(dataset.val.images))
    return MemorisationFilter(ct(dataset.train.images), threshold)


def generate_stacks(
    generator: nn.Module, cfg: DictConfig, device: torch.device, memorisation: MemorisationFilter | None = None
) -> dict[str, Tensor]:
    """Every stack (``samples``, or one per class): ``num_samples`` from ``seed``, one image per seed of
    ``seeds``, or the latent walk of ``interpolate``; (N, C, R, R) in [-1, 1], mask channels included.
    With ``memorisation``, near-copies of training slices are replaced by new draws (:func:`without_memorised`)."""
    check_sample_options(cfg, generator, memorisation is not None)
    stacks = {}
    for name, label in _class_by_stack(generator.num_classes).items():
        draw = _drawing(generator, cfg, device, label)
        images = draw(0, 0)
        if memorisation is not None:
            images = without_memorised(name, images, draw, memorisation, cfg.reject_max_draws)
        stacks[name] = images
    return stacks


def check_sample_options(cfg: DictConfig, generator: nn.Module, rejects_memorised: bool) -> None:
    if cfg.num_samples < 1 or cfg.batch_size < 1:
        raise LiverGanError(f"num_samples={cfg.num_samples} and batch_size={cfg.batch_size} must be at least 1")
    if cfg.truncation_psi != 1.0 and isinstance(generator, DiffusionModel):
        raise LiverGanError(
            f"truncation_psi={cfg.truncation_psi} is for GANs, but {cfg.checkpoint} is a diffusion model; "
            "leave truncation_psi=1.0"
        )
    if cfg.seeds is not None:
        parse_seeds(cfg.seeds)
    if cfg.interpolate is None:
        return
    if cfg.seeds is not None or rejects_memorised:
        raise LiverGanError("interpolate=[...] draws its own latent walk: leave seeds=null and reject_memorised=false")
    if len(cfg.interpolate) < 2 or min(cfg.interpolate) < 0 or cfg.interpolate_steps < 2:
        raise LiverGanError(
            f"interpolate={list(cfg.interpolate)} interpolate_steps={cfg.interpolate_steps}: give at least two "
            "non-negative seeds to walk through and at least 2 steps, e.g. interpolate=[0,7] interpolate_steps=8"
        )


def without_memorised(
    name: str, images: Tensor, draw: Callable[[int, int], Tensor], memorisation: MemorisationFilter, max_draws: int
) -> Tensor:
    """``images`` without near-copies, made up to their number by at most ``max_draws`` new draws
    (``draw(number, count)``); says how many were rejected, and warns when the number is not reached."""
    asked = len(images)
    kept, rejected = reject_memorised(images, memorisation.train_images, memorisation.threshold)
    draws = 0
    while len(kept) < asked and draws < max_draws:
        draws += 1
        new_images = draw(draws, asked - len(kept))
        new, newly_rejected = reject_memorised(new_images, memorisation.train_images, memorisation.threshold)
        kept, rejected = torch.cat([kept, new]), rejected + newly_rejected
    print(
        f"{name}: rejected {rejected} samples closer than {memorisation.threshold:.4f} (pixel RMS) to a training "
        f"slice; kept {len(kept)} of {asked} after {draws} new draws"
    )
    if len(kept) < asked:
        print(
            f"liver-gan: warning: {name}: only {len(kept)} of {asked} samples are not near-copies after "
            f"reject_max_draws={max_draws} new draws; writing those (raise reject_max_draws for more tries)",
            file=sys.stderr,
        )
    return kept


def _drawing(
    generator: nn.Module, cfg: DictConfig, device: torch.device, label: int | None
) -> Callable[[int, int], Tensor]:
    """``draw(number, count)``: draw 0 gives the images asked for; draw 1, 2, ... give ``count`` new
    ones (for rejected samples): from a stream of their own, or with ``seeds`` the seeds after the range."""
    psi = cfg.truncation_psi

    def labels(count: int) -> Tensor | None:
        return None if label is None else torch.full((count,), label)

    def from_latents(latents: Tensor) -> Tensor:
        return generate_from_latents(generator, latents, device, cfg.batch_size, labels(len(latents)), psi)

    if cfg.interpolate is not None:
        walk = walk_latents(list(cfg.interpolate), cfg.interpolate_steps, generator.latent_dim)
        return lambda number, count: from_latents(walk)
    if cfg.seeds is not None:
        seeds = parse_seeds(cfg.seeds)
        unused = itertools.count(max(seeds) + 1)

        def draw_seeds(number: int, count: int) -> Tensor:
            chosen = seeds if number == 0 else [next(unused) for _ in range(count)]
            return from_latents(seed_latents(chosen, generator.latent_dim))

        return draw_seeds

    def draw(number: int, count: int) -> Tensor:
        count = cfg.num_samples if number == 0 else count
        seed = _draw_seed(cfg.seed, number)
        return generate(generator, count, device, cfg.batch_size, labels(count), seed=seed, truncation_psi=psi)

    return draw


def _draw_seed(seed: int, number: int) -> int:
    """``seed`` for the first draw; for new draws, a seed of their own that no other ``seed=`` gives."""
    return seed if number == 0 else int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


def write_stacks(stacks: dict[str, Tensor], export_format: SampleFormat, out: Path) -> list[Path]:
    """``format=png`` or ``npy``: each stack's .npy (and PNG folder), with its label maps when it has masks."""
    written = []
    for name, images in stacks.items():
        if export_format is SampleFormat.png:
            write_png_folder(ct(images), out / name)
            written.append(out / name)
        _write_npy(out / f"{name}.npy", ct(images).numpy())
        written.append(out / f"{name}.npy")
        if has_masks(images):
            maps = label_maps(images).to(torch.uint8)
            if export_format is SampleFormat.png:
                write_label_pngs(maps, out / f"{name}_labels")
                written.append(out / f"{name}_labels")
            _write_npy(out / f"{name}_labels.npy", maps.numpy())
            written.append(out / f"{name}_labels.npy")
    return written


def write_sample_files(stacks: dict[str, Tensor], cfg: DictConfig, out: Path) -> None:
    """``format=png`` or ``npy`` into ``out``: the stacks, and with ``interpolate`` their walk grids."""
    write_stacks(stacks, SampleFormat(cfg.format), out)
    if cfg.interpolate is not None:
        write_walk_grids(stacks, cfg.interpolate_steps, out)


def write_walk_grids(stacks: dict[str, Tensor], steps: int, out: Path) -> list[Path]:
    """``interpolate``: each stack's walk as ``<out>/<stack>_interpolation.png``, one row per pair of seeds."""
    paths = [out / f"{name}_interpolation.png" for name in stacks]
    for path, images in zip(paths, stacks.values()):
        write_grid_png(image_grid(images, columns=steps), path)
    return paths


def export_stacks(stacks: dict[str, Tensor], cfg: DictConfig, train_cfg: DictConfig, out: Path) -> Path:
    """``format=nifti|nnunet|lits``: the stacks in HU, with the spacing of the run's own training slices."""
    export_format = SampleFormat(cfg.format)
    folder = {SampleFormat.nifti: "nifti", SampleFormat.lits: "lits", SampleFormat.nnunet: cfg.nnunet_dataset}
    if export_format is SampleFormat.nnunet and not re.fullmatch(r"Dataset\d{3}_\w+", cfg.nnunet_dataset):
        raise LiverGanError(
            f"nnunet_dataset={cfg.nnunet_dataset}: nnU-Net finds datasets named DatasetXXX_Name (three digits), "
            "e.g. nnunet_dataset=Dataset901_SynthLiver"
        )
    dataset = run_dataset(train_cfg, **given_paths(cfg.dataset))
    spacing = source_spacing(dataset.train)
    directory, window = out / folder[export_format], train_cfg.dataset.window
    if export_format is SampleFormat.nnunet:
        # nnU-Net validates on real cases: the run's validation slices, which its generator never saw.
        return EXPORTS["nnunet"](stacks, directory, window, spacing, validation=dataset.val)
    return EXPORTS[export_format.value](stacks, directory, window, spacing)


def _class_by_stack(num_classes: int) -> dict[str, int | None]:
    if num_classes == 0:
        return {"samples": None}
    return {CLASS_NAMES[label]: label for label in range(num_classes)}


def _write_npy(path: Path, array: np.ndarray) -> None:
    def save(tmp: Path) -> None:
        with tmp.open("wb") as file:  # a file object: np.save would append .npy to the temporary name
            np.save(file, array)

    atomic_write(path, save)


@report_user_errors
def sample(cfg: DictConfig) -> None:
    if OmegaConf.is_missing(cfg, "checkpoint"):
        raise LiverGanError("checkpoint=RUN_DIR_OR_PT is required: a liver-gan-train run dir or a checkpoint file")
    device = resolve_device(cfg.device, "device")
    generator, train_cfg = load_generator(Path(cfg.checkpoint), device)
    if cfg.sample_steps is not None:
        if not isinstance(generator, DiffusionModel):
            raise LiverGanError(
                f"sample_steps={cfg.sample_steps} sets a diffusion model's DDIM steps, but {cfg.checkpoint} is a GAN; "
                "leave sample_steps=null"
            )
        generator = with_sample_steps(generator, cfg.sample_steps, "sample_steps")
    out = Path(cfg.out) if cfg.out is not None else Path(HydraConfig.get().runtime.output_dir)
    memorisation = memorisation_filter(cfg, train_cfg) if cfg.reject_memorised else None
    stacks = generate_stacks(generator, cfg, device, memorisation)
    counts = ", ".join(f"{len(images)} {name}" for name, images in stacks.items())
    resolution = next(iter(stacks.values())).shape[-1]
    if SampleFormat(cfg.format) in (SampleFormat.png, SampleFormat.npy):
        written = write_export(out, lambda tmp: write_sample_files(stacks, cfg, tmp), cfg.overwrite)
        print(f"{counts} images of {resolution}x{resolution}: {', '.join(str(path) for path in written)}")
    else:
        print(f"{counts} images of {resolution}x{resolution}: {export_stacks(stacks, cfg, train_cfg, out)}")


def main() -> None:
    scripts.sample()  # the console script: see liver_gan/cli/scripts.py
