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
- Nothing in ``out`` is replaced (liver_gan.atomic.write_export): a name already taken there is
  refused, and ``overwrite=true`` replaces only what an earlier export wrote.
A diffusion model draws with its run's ``model.sample_steps`` DDIM steps, or ``sample_steps=N``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from liver_gan.atomic import atomic_write, write_export
from liver_gan.cli import report_user_errors, run_hydra_app
from liver_gan.config import SampleFormat
from liver_gan.data.labels import CLASS_NAMES
from liver_gan.data.masks import ct, has_masks, label_maps
from liver_gan.data.segmentation_export import EXPORTS, source_spacing
from liver_gan.device import resolve_device
from liver_gan.errors import LiverGanError
from liver_gan.images import write_label_pngs, write_png_folder
from liver_gan.metrics.memorisation import reject_memorised, validation_threshold
from liver_gan.models.ddpm import DiffusionModel, with_sample_steps
from liver_gan.sampling import generate
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
    """Every stack (``samples``, or one per class), without near-copies of training slices when
    ``memorisation`` is given; (N, C, R, R) in [-1, 1], mask channels included."""
    if cfg.num_samples < 1 or cfg.batch_size < 1:
        raise LiverGanError(f"num_samples={cfg.num_samples} and batch_size={cfg.batch_size} must be at least 1")
    stacks = {}
    for name, labels in _labels_by_stack(generator.num_classes, cfg.num_samples).items():
        images = generate(generator, cfg.num_samples, device, cfg.batch_size, labels, seed=cfg.seed)
        if memorisation is not None:
            images, dropped = reject_memorised(images, memorisation.train_images, memorisation.threshold)
            print(
                f"{name}: dropped {dropped} of {cfg.num_samples} samples closer than "
                f"{memorisation.threshold:.4f} (pixel RMS) to a training slice"
            )
        stacks[name] = images
    return stacks


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


def export_stacks(stacks: dict[str, Tensor], cfg: DictConfig, train_cfg: DictConfig, out: Path) -> Path:
    """``format=nifti|nnunet|lits``: the stacks in HU, with the spacing of the run's own training slices."""
    export_format = SampleFormat(cfg.format)
    folder = {SampleFormat.nifti: "nifti", SampleFormat.lits: "lits", SampleFormat.nnunet: cfg.nnunet_dataset}
    if export_format is SampleFormat.nnunet and not re.fullmatch(r"Dataset\d{3}_\w+", cfg.nnunet_dataset):
        raise LiverGanError(
            f"nnunet_dataset={cfg.nnunet_dataset}: nnU-Net finds datasets named DatasetXXX_Name (three digits), "
            "e.g. nnunet_dataset=Dataset901_SynthLiver"
        )
    spacing = source_spacing(run_dataset(train_cfg, **given_paths(cfg.dataset)).train)
    export = EXPORTS[export_format.value]
    return export(stacks, out / folder[export_format], train_cfg.dataset.window, spacing)


def _labels_by_stack(num_classes: int, num_samples: int) -> dict[str, Tensor | None]:
    if num_classes == 0:
        return {"samples": None}
    return {CLASS_NAMES[label]: torch.full((num_samples,), label) for label in range(num_classes)}


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
        written = write_export(out, lambda tmp: write_stacks(stacks, SampleFormat(cfg.format), tmp), cfg.overwrite)
        print(f"{counts} images of {resolution}x{resolution}: {', '.join(str(path) for path in written)}")
    else:
        print(f"{counts} images of {resolution}x{resolution}: {export_stacks(stacks, cfg, train_cfg, out)}")


def main() -> None:
    run_hydra_app(sample, "sample")
