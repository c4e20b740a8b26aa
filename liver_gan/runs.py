"""A finished run: its checkpoint, its trained generator and the dataset it trained on.

What liver-gan-sample, -eval, -utility and -vtt open.  A run is given as its run dir (its
``checkpoints/last.pt``) or as one checkpoint file; the checkpoint's config is validated before
anything is built from it (:func:`liver_gan.training.checkpoint.saved_config`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from liver_gan.config import DatasetConfig
from liver_gan.data.dataset import PreparedDataset, prepare_dataset
from liver_gan.errors import LiverGanError
from liver_gan.models import build_generator, is_inpainter
from liver_gan.training.checkpoint import EMA_KEY, last_checkpoint, load_checkpoint


def find_checkpoint(run_dir_or_file: Path) -> Path:
    """A checkpoint file as given, or ``<run_dir>/checkpoints/last.pt`` of a run directory."""
    path = Path(run_dir_or_file)
    if path.is_file():
        return path
    last = last_checkpoint(path)
    if not last.is_file():
        raise LiverGanError(f"no checkpoint at {last}; pass a run dir of a liver-gan-train run or a .pt file")
    return last


def load_generator(run_dir_or_file: Path, device: torch.device) -> tuple[nn.Module, DictConfig]:
    """The trained generator of a run (eval mode, on ``device``) and the run's validated config.

    The generator is a GAN's G or a diffusion model; its EMA copy when the run kept one
    (``trainer.ema_kimg``).
    """
    path = find_checkpoint(run_dir_or_file)
    state = load_checkpoint(path)
    cfg = state["config"]
    if is_inpainter(cfg):
        raise LiverGanError(
            f"{path} is a run of model=inpaint, which fills lesions and draws no slices from noise: "
            "use it as lesion=learned lesion.checkpoint=RUN_DIR"
        )
    generator = build_generator(cfg)
    generator.load_state_dict(state[EMA_KEY] if EMA_KEY in state else state["generator"])
    return generator.to(device).eval(), cfg


def run_dataset(train_cfg: DictConfig, **overrides: Any) -> PreparedDataset:
    """The dataset a run trained on, from its saved config and seed (so the same patient split).

    ``overrides`` replace dataset options, e.g. ``subset="all"``.
    """
    dataset_cfg = OmegaConf.merge(OmegaConf.structured(DatasetConfig), train_cfg.dataset, overrides)
    return prepare_dataset(dataset_cfg, seed=train_cfg.seed)
