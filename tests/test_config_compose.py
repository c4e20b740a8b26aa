"""Every option of every config group composes into a validated training config, and a mistyped
override fails at composition, in the compose API and in the CLI, before any data is touched."""

from __future__ import annotations

import importlib
import json
import re
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

import liver_gan
from liver_gan.cli import CONFIG_DIR
from liver_gan.config import SCHEMAS as REGISTERED_SCHEMAS, check_schema_keys, register_configs
from liver_gan.data.schema import DatasetConfig
from liver_gan.errors import LiverGanError
from liver_gan.loss_schema import LossConfig
from liver_gan.metrics.schema import EvalConfig
from liver_gan.models.ddpm import DiffusionModel
from liver_gan.models.schema import BaseModelConfig, DDPMConfig
from liver_gan.training.family import build_family
from liver_gan.training.schema import OptimizerConfig, TrainerConfig

SCHEMAS = {
    "dataset": DatasetConfig,
    "model": BaseModelConfig,
    "optimizer": OptimizerConfig,
    "loss": LossConfig,
    "eval": EvalConfig,
    "trainer": TrainerConfig,
}


def group_options() -> List[Tuple[str, str]]:
    """(group, option) for every group of the training config's defaults list and every option Hydra
    finds for it (conf/ files and ConfigStore entries alike).  Groups of other apps' primary configs
    (e.g. ``classifier``) are theirs."""
    register_configs()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        choices = compose("train", return_hydra_config=True).hydra.runtime.choices
        loader = GlobalHydra.instance().config_loader()
        groups = sorted(group for group in choices if not group.startswith("hydra/"))
        return [(group, option) for group in groups for option in loader.get_group_options(group)]


OPTIONS = group_options()


def task_config(cfg: DictConfig) -> DictConfig:
    """What the task function receives: the composed config without Hydra's own node."""
    return OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"])


def test_the_enumeration_finds_the_documented_groups() -> None:
    found = {(group, option) for group, option in OPTIONS}
    assert {("model", "mlp"), ("model", "dcgan"), ("optimizer", "adam"), ("optimizer", "adamw")} <= found
    assert {("loss", "bce"), ("loss", "nonsaturating"), ("loss", "hinge"), ("eval", "default")} <= found
    assert {("experiment", "thesis"), ("experiment", "conditional_dcgan"), ("debug", "smoke")} <= found
    assert not [option for _, option in OPTIONS if option.startswith("base_") or option.endswith("_schema")]


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_every_group_option_composes(compose_config: Callable[..., DictConfig], group: str, option: str) -> None:
    cfg = compose_config([f"{group}={option}"])
    assert cfg.hydra.runtime.choices[group] == option
    train_cfg = task_config(cfg)
    OmegaConf.to_container(train_cfg, resolve=True)  # every interpolation resolves
    check_schema_keys(train_cfg)  # the check every tool runs before its task passes every preset
    diffusion = OmegaConf.get_type(train_cfg.model) is DDPMConfig
    for name, schema in SCHEMAS.items():
        if name == "loss" and diffusion:
            assert train_cfg.loss is None  # a diffusion model has no loss group (conf/model/ddpm.yaml)
            continue
        assert issubclass(OmegaConf.get_type(train_cfg[name]), schema), name
    if group in ("model", "optimizer", "experiment"):
        # The composed model and optimizer options are also what their family's builder accepts.
        family = build_family(train_cfg, torch.device("cpu"))
        assert isinstance(family.generator, DiffusionModel) == (OmegaConf.get_type(train_cfg.model) is DDPMConfig)


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


@pytest.mark.parametrize(
    ("override", "key"),
    [("+optimizer.lrr=1", "optimizer.lrr"), ("++trainer.epochs_=3", "trainer.epochs_"), ("+seedd=1", "seedd"),
     ("+dataset.window.levl=40", "dataset.window.levl")],
)
def test_a_key_added_with_plus_to_a_schema_fails(compose_config: Callable[..., DictConfig], override: str, key: str) -> None:
    """Hydra's '+' lifts the struct flag for its update; the schema check still refuses the key."""
    cfg = compose_config([override], hydra=False)
    with pytest.raises(LiverGanError, match=rf"^{re.escape(key)}: no such key in "):
        check_schema_keys(cfg)


def test_a_key_added_with_plus_fails_in_the_cli_before_any_dataset_build(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "liver_gan.cli.train",
            "+optimizer.lrr=1",
            f"dataset.root={tmp_path / 'phantom'}",
            f"dataset.cache_dir={tmp_path / 'cache'}",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("liver-gan: error: optimizer.lrr: no such key in OptimizerConfig")
    assert not (tmp_path / "phantom").exists() and not (tmp_path / "cache").exists()


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


# The internal schemas: their names before the registry (base_*) and now (*_schema), each under the
# group whose YAML files extend it; (group, name, the primary config that reads the group).
INTERNAL_SCHEMAS = [
    *[(group, f"base_{name}", "train") for group, name in [
        ("dataset", "dataset"), ("model", "mlp"), ("model", "dcgan"), ("optimizer", "optimizer"),
        ("loss", "loss"), ("eval", "eval"), ("trainer", "trainer"),
    ]],
    ("classifier", "base_classifier", "utility"),
    *[(group, f"{name}_schema", "train") for group, name in [
        ("dataset", "dataset"), ("model", "mlp"), ("model", "dcgan"), ("model", "ddpm"), ("optimizer", "optimizer"),
        ("loss", "loss"), ("eval", "eval"), ("trainer", "trainer"),
    ]],
    ("classifier", "classifier_schema", "utility"),
]


@pytest.mark.parametrize(("group", "name", "tool"), INTERNAL_SCHEMAS, ids=[f"{g}={n}" for g, n, _ in INTERNAL_SCHEMAS])
def test_internal_schemas_are_no_options(compose_config: Callable[..., DictConfig], group: str, name: str, tool: str) -> None:
    with pytest.raises(ConfigCompositionException, match="Could not find"):
        compose_config([f"{group}={name}"], config_name=tool)


TOOL_CONFIGS = ("train", "prepare", "sample", "evaluate", "utility")
COMPOSE_EVERY_SCHEMA = """
import json
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
import liver_gan
from liver_gan.cli import CONFIG_DIR
from liver_gan.config import SCHEMAS, register_configs

register_configs()
with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
    names = [*SCHEMAS, *TOOLS]
    print(json.dumps({name: OmegaConf.get_type(compose(name)).__name__ for name in names}))
"""


def test_every_schema_and_tool_config_composes_through_register_configs_alone() -> None:
    """In a fresh interpreter, so that nothing registered by an earlier test helps."""
    script = COMPOSE_EVERY_SCHEMA.replace("TOOLS", repr(TOOL_CONFIGS))
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    types = json.loads(result.stdout.splitlines()[-1])
    assert {name: types[name] for name in REGISTERED_SCHEMAS} == {
        name: schema.__name__ for name, schema in REGISTERED_SCHEMAS.items()
    }
    assert {tool: types[tool] for tool in TOOL_CONFIGS} == {
        tool: REGISTERED_SCHEMAS[f"{tool}_schema"].__name__ for tool in TOOL_CONFIGS
    }


# Groups whose files are presets of other groups' keys (@package _global_) or Hydra plugins' options.
PRESET_GROUPS = {"experiment", "debug", "hparams_search", "hydra"}
CODE_COMMENT = re.compile(r"^# Code: .*?(liver_gan/[\w/]+\.py)", re.M)


@pytest.mark.parametrize(
    "path",
    sorted(path for path in Path(CONFIG_DIR).glob("*/*.yaml") if path.parent.name not in PRESET_GROUPS),
    ids=lambda path: f"{path.parent.name}/{path.name}",
)
def test_each_group_yaml_names_its_code(path: Path) -> None:
    """A ``_target_`` that imports, or a ``# Code: liver_gan/<module>.py`` comment naming a module that exists."""
    text = path.read_text()
    targets = re.findall(r"^\s*_target_: ([\w.]+)", text, re.M)
    for target in targets:
        module, _, attribute = target.rpartition(".")
        assert hasattr(importlib.import_module(module), attribute), target
    comment = CODE_COMMENT.search(text)
    assert targets or comment, f"{path} names no code"
    if comment:
        assert (Path(liver_gan.__file__).parents[1] / comment.group(1)).is_file(), comment.group(1)
