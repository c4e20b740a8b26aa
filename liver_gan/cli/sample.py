"""``liver-gan-sample checkpoint=RUN_DIR_OR_PT``: write generated slices as PNGs and a .npy stack.

An unconditional model writes ``<out>/samples/*.png`` and ``<out>/samples.npy``; a conditional
one writes ``num_samples`` images of each class, ``<out>/<class>/*.png`` and ``<out>/<class>.npy``,
from the same noise vectors, so ``healthy/00003.png`` and ``tumor/00003.png`` differ only in the
label.  Images are the model's own resolution; the stacks are float32 (N, 1, R, R) in [-1, 1].
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from liver_gan.atomic import atomic_write
from liver_gan.cli import report_user_errors, run_hydra_app
from liver_gan.data.labels import CLASS_NAMES
from liver_gan.device import resolve_device
from liver_gan.errors import LiverGanError
from liver_gan.images import write_png_folder
from liver_gan.metrics.memorisation import reject_memorised, validation_threshold
from liver_gan.sampling import generate
from liver_gan.runs import load_generator, run_dataset


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
    dataset = run_dataset(train_cfg)
    threshold = cfg.memorisation_threshold
    if threshold is None:
        threshold = validation_threshold(dataset.train.images, dataset.val.images)
    return MemorisationFilter(dataset.train.images, threshold)


def write_samples(
    generator: nn.Module,
    cfg: DictConfig,
    out: Path,
    device: torch.device,
    memorisation: MemorisationFilter | None = None,
) -> dict[str, Tensor]:
    """Generate and write every stack (``samples``, or one per class), without near-copies of
    training slices when ``memorisation`` is given; returns them by name."""
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
        write_png_folder(images, out / name)
        atomic_write(out / f"{name}.npy", lambda tmp: _save_npy(tmp, images.numpy()))
        stacks[name] = images
    return stacks


def _labels_by_stack(num_classes: int, num_samples: int) -> dict[str, Tensor | None]:
    if num_classes == 0:
        return {"samples": None}
    return {CLASS_NAMES[label]: torch.full((num_samples,), label) for label in range(num_classes)}


def _save_npy(path: Path, array: np.ndarray) -> None:
    with path.open("wb") as file:  # a file object: np.save would append .npy to the temporary name
        np.save(file, array)


@report_user_errors
def sample(cfg: DictConfig) -> None:
    if OmegaConf.is_missing(cfg, "checkpoint"):
        raise LiverGanError("checkpoint=RUN_DIR_OR_PT is required: a liver-gan-train run dir or a checkpoint file")
    device = resolve_device(cfg.device, "device")
    generator, train_cfg = load_generator(Path(cfg.checkpoint), device)
    out = Path(cfg.out) if cfg.out is not None else Path(HydraConfig.get().runtime.output_dir)
    memorisation = memorisation_filter(cfg, train_cfg) if cfg.reject_memorised else None
    stacks = write_samples(generator, cfg, out, device, memorisation)
    for name, images in stacks.items():
        print(f"{len(images)} images of {images.shape[-2]}x{images.shape[-1]}: {out / name}/ and {out / name}.npy")


def main() -> None:
    run_hydra_app(sample, "sample")
