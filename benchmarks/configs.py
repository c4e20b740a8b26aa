"""Configs for the benchmarks, composed exactly as the command-line tools compose them.

Every benchmark that runs liver-gan code gets its config from Hydra's compose API with the same
overrides a user would type, so a figure measures the configuration the docs promise.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from liver_gan.cli import CONFIG_DIR
from liver_gan.config import register_configs

DEFAULT_WORKDIR = Path("outputs/benchmarks")


def compose_config(overrides: Sequence[str], config_name: str = "train") -> DictConfig:
    """The composed primary config (``config`` = liver-gan-train, ``prepare`` = liver-gan-prepare)."""
    register_configs()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides))


def workdir_overrides(workdir: Path, phantom: str = "phantom") -> list[str]:
    """Keep the phantom ``workdir/phantom``, the slice cache and the reference statistics inside the work dir."""
    return [
        f"dataset.root={workdir / phantom}",
        f"dataset.cache_dir={workdir / 'cache'}",
        f"eval.cache_dir={workdir / 'cache' / 'reference_stats'}",
    ]
