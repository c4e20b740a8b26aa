"""Training checkpoints: everything a run needs to continue exactly, or to sample from its generator.

A checkpoint is one dict saved atomically with :func:`torch.save`: the generator and discriminator,
both optimizers, ``epoch`` (epochs completed) and ``step``, every random stream (``rng``), the fixed
noise (and labels) of the sample grids, the resolved config as plain containers and the dataset
key.  It holds only tensors and plain Python values, so it loads with ``weights_only=True``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from liver_gan.atomic import atomic_torch_save, atomic_write
from liver_gan.config import DatasetConfig
from liver_gan.data.dataset import PreparedDataset, prepare_dataset
from liver_gan.data.labels import CLASS_NAMES
from liver_gan.errors import LiverGanError

CHECKPOINT_KEYS = (
    "generator",
    "discriminator",
    "optimizer_g",
    "optimizer_d",
    "epoch",
    "step",
    "rng",
    "fixed_noise",
    "fixed_labels",
    "config",
    "dataset_key",
)


def last_checkpoint(run_dir: Path) -> Path:
    """``<run_dir>/checkpoints/last.pt``: the newest checkpoint of a run, whether or not it exists yet."""
    return Path(run_dir) / "checkpoints" / "last.pt"


def plain_config(cfg: DictConfig) -> dict[str, Any]:
    """``cfg`` resolved into plain Python values (enums as their names), as checkpoints and TensorBoard keep it."""
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically: a killed run leaves the previous file intact."""
    missing = [key for key in CHECKPOINT_KEYS if key not in state]
    if missing:
        raise ValueError(f"a checkpoint needs the keys {missing}")
    atomic_torch_save(state, Path(path))


def link_checkpoint(source: Path, destination: Path) -> None:
    """Make ``destination`` (e.g. last.pt) the same file as ``source``, atomically and without a copy.

    A hard link costs nothing, where saving the thesis MLP's checkpoint again takes a tenth of a
    second; file systems without hard links get a copy.
    """
    atomic_write(Path(destination), lambda tmp: _link_or_copy(Path(source), tmp))


def _link_or_copy(source: Path, tmp: Path) -> None:
    tmp.unlink()
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise LiverGanError(f"checkpoint {path} does not exist; pass an existing .pt file or run dir")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises many types for a truncated or foreign file
        raise LiverGanError(
            f"checkpoint {path} cannot be read ({type(error).__name__}); pass a liver-gan checkpoint"
        ) from error
    if not isinstance(state, dict) or any(key not in state for key in CHECKPOINT_KEYS):
        raise LiverGanError(f"{path} is not a liver-gan training checkpoint; pass a checkpoints/*.pt file of a run")
    return state


def find_checkpoint(run_dir_or_file: Path) -> Path:
    """A checkpoint file as given, or ``<run_dir>/checkpoints/last.pt`` of a run directory."""
    path = Path(run_dir_or_file)
    if path.is_file():
        return path
    last = last_checkpoint(path)
    if not last.is_file():
        raise LiverGanError(f"no checkpoint at {last}; pass a run dir of a liver-gan-train run or a .pt file")
    return last


def build_gan(cfg: DictConfig) -> tuple[nn.Module, nn.Module]:
    """The ``(generator, discriminator)`` of ``cfg.model`` at ``cfg.dataset.resolution``."""
    num_classes = len(CLASS_NAMES) if cfg.model.conditional else 0
    return instantiate(cfg.model, resolution=cfg.dataset.resolution, num_classes=num_classes)


def load_generator(run_dir_or_file: Path, device: torch.device) -> tuple[nn.Module, DictConfig]:
    """The trained generator of a run (eval mode, on ``device``) and the run's resolved config."""
    path = find_checkpoint(run_dir_or_file)
    state = load_checkpoint(path)
    cfg = OmegaConf.create(state["config"])
    generator, _ = build_gan(cfg)
    generator.load_state_dict(state["generator"])
    return generator.to(device).eval(), cfg


def run_dataset(train_cfg: DictConfig, **overrides: Any) -> PreparedDataset:
    """The dataset a run trained on, from its saved config and seed (so the same patient split).

    ``overrides`` replace dataset options, e.g. ``subset="all"``.
    """
    dataset_cfg = OmegaConf.merge(OmegaConf.structured(DatasetConfig), train_cfg.dataset, overrides)
    return prepare_dataset(dataset_cfg, seed=train_cfg.seed)
