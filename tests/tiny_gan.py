"""Tiny untrained GAN checkpoints on a tiny phantom, saved in the documented checkpoint format,
for the tools that load a run (liver-gan-utility, liver-gan-vtt)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, List

import torch
from omegaconf import DictConfig, OmegaConf

from liver_gan.models.registry import build_gan
from liver_gan.training.checkpoint import plain_config, save_checkpoint


def tiny_phantom_overrides(tmp_path: Path) -> List[str]:
    """Six 64-pixel phantom patients at 32x32, two of them in val: seconds to build.  The tumor
    slices only and no EMA, whatever the default run (experiment=quickstart) chooses: the tests'
    slice, step and checkpoint counts are of this set."""
    return [
        "dataset.subset=tumor",
        "trainer.ema_kimg=null",
        "model=mlp",
        "model.generator_widths=[32]",
        "model.discriminator_widths=[32]",
        "model.latent_dim=8",
        f"dataset.root={tmp_path / 'phantom'}",
        f"dataset.cache_dir={tmp_path / 'cache'}",
        "dataset.resolution=32",
        "dataset.val_fraction=0.34",
        "dataset.num_workers=1",
        "dataset.phantom.num_volumes=6",
        "dataset.phantom.in_plane=64",
        "dataset.phantom.min_slices=16",
        "dataset.phantom.max_slices=20",
    ]


def tiny_ddpm_overrides(tmp_path: Path) -> List[str]:
    """The tiny phantom with a tiny diffusion model instead of the tiny MLP: two U-Net levels of 8
    channels, a 50-step schedule and 2 DDIM steps per sample."""
    phantom = [override for override in tiny_phantom_overrides(tmp_path) if not override.startswith("model")]
    return [
        *phantom,
        "model=ddpm",
        "model.channels=[8,8]",
        "model.attention_levels=[false,true]",
        "model.norm_num_groups=4",
        "model.num_head_channels=8",
        "model.num_train_timesteps=50",
        "model.sample_steps=2",
    ]


def save_tiny_checkpoint(compose: Callable[..., DictConfig], run_dir: Path, overrides: List[str]) -> Path:
    """An untrained generator's run dir with ``checkpoints/last.pt``; returns the run dir."""
    cfg = compose(overrides)
    train_cfg = OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"])
    torch.manual_seed(0)
    generator, discriminator = build_gan(train_cfg)
    save_checkpoint(
        run_dir / "checkpoints" / "last.pt",
        {
            "generator": generator.state_dict(),
            "discriminator": discriminator.state_dict(),
            "optimizer_g": {},
            "optimizer_d": {},
            "epoch": 1,
            "step": 1,
            "rng": {},
            "fixed_noise": torch.zeros(1, train_cfg.model.latent_dim),
            "fixed_labels": None,
            "config": plain_config(train_cfg),
            "dataset_key": "",
        },
    )
    return run_dir
