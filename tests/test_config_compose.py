"""Every option of every config group composes into a validated training config, and a mistyped
override fails at composition, in the compose API and in the CLI, before any data is touched."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Callable, List, Tuple

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig, OmegaConf

from liver_gan.cli import CONFIG_DIR
from liver_gan.config import (
    DatasetConfig,
    EvalConfig,
    LossConfig,
    ModelConfig,
    OptimizerConfig,
    TrainerConfig,
    register_configs,
)
from liver_gan.training.checkpoint import build_gan
from liver_gan.training.optim import build_optimizers

SCHEMAS = {
    "dataset": DatasetConfig,
    "model": ModelConfig,
    "optimizer": OptimizerConfig,
    "loss": LossConfig,
    "eval": EvalConfig,
    "trainer": TrainerConfig,
}


def group_options() -> List[Tuple[str, str]]:
    """(group, option) for every group of the training config's defaults list and every option Hydra
    finds for it (conf/ files and ConfigStore entries alike), less the ``base_*`` schemas that the
    YAML files extend.  Groups of other apps' primary configs (e.g. ``classifier``) are theirs."""
    register_configs()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        choices = compose("config", return_hydra_config=True).hydra.runtime.choices
        loader = GlobalHydra.instance().config_loader()
        groups = sorted(group for group in choices if not group.startswith("hydra/"))
        return [
            (group, option)
            for group in groups
            for option in loader.get_group_options(group)
            if not option.startswith("base_")
        ]


OPTIONS = group_options()


def task_config(cfg: DictConfig) -> DictConfig:
    """What the task function receives: the composed config without Hydra's own node."""
    return OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"])


def test_the_enumeration_finds_the_documented_groups() -> None:
    found = {(group, option) for group, option in OPTIONS}
    assert {("model", "mlp"), ("model", "dcgan"), ("optimizer", "adam"), ("optimizer", "adamw")} <= found
    assert {("loss", "bce"), ("loss", "nonsaturating"), ("loss", "hinge"), ("eval", "fid")} <= found
    assert {("experiment", "thesis"), ("experiment", "conditional_dcgan"), ("debug", "smoke")} <= found
    assert not [option for _, option in OPTIONS if option.startswith("base_")]


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_group_option_composes(compose_config: Callable[..., DictConfig], group: str, option: str) -> None:
    cfg = compose_config([f"{group}={option}"])
    assert cfg.hydra.runtime.choices[group] == option
    train_cfg = task_config(cfg)
    OmegaConf.to_container(train_cfg, resolve=True)  # every interpolation resolves
    for name, schema in SCHEMAS.items():
        assert issubclass(OmegaConf.get_type(train_cfg[name]), schema), name
    if group in ("model", "optimizer", "experiment"):
        # The composed model and optimizer options are also what their builders accept.
        generator, discriminator = build_gan(train_cfg)
        build_optimizers(train_cfg.optimizer, generator, discriminator, torch.device("cpu"))


def test_thesis_preset_is_section_6_4(compose_config: Callable[..., DictConfig]) -> None:
    cfg = compose_config(["experiment=thesis"])
    assert cfg.model._target_.endswith("build_mlp_gan")
    assert (cfg.dataset.subset.value, cfg.dataset.resolution, cfg.model.latent_dim) == ("tumor", 64, 100)
    assert (cfg.trainer.batch_size, cfg.trainer.epochs) == (64, 1000)
    assert (cfg.trainer.checkpoint_every, cfg.trainer.sample_every) == (20, 30)
    assert (cfg.optimizer._target_, cfg.optimizer.lr, cfg.optimizer.d_lr) == ("torch.optim.Adam", 2e-4, None)
    assert cfg.loss.name.value == "bce"


@pytest.mark.parametrize("override", ["optimizer.lrr=1", "trainer.epochs=abc", "model=mpl"])
def test_a_mistyped_override_fails_at_composition(compose_config: Callable[..., DictConfig], override: str) -> None:
    with pytest.raises(ConfigCompositionException):
        compose_config([override])


def test_a_mistyped_override_fails_in_the_cli_before_any_dataset_build(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "liver_gan.cli.train",
            "optimizer.lrr=1",
            f"dataset.root={tmp_path / 'phantom'}",
            f"dataset.cache_dir={tmp_path / 'cache'}",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    assert "lrr" in result.stderr
    assert sorted(path.name for path in tmp_path.iterdir()) == []
