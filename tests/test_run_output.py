"""What a training run tells its user: the config tree at start, progress while it runs, and its
result at the end."""

from __future__ import annotations

from typing import Callable

import pytest
from omegaconf import DictConfig, open_dict

from liver_gan.cli.config_tree import print_config_tree, wants_config_tree


def test_the_config_tree_shows_every_group_and_value(
    compose_config: Callable[..., DictConfig], capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = compose_config(["optimizer.lr=0.00031"])
    with open_dict(cfg):
        del cfg["hydra"]
    print_config_tree(cfg)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "config"
    groups = [line.split()[-1] for line in lines if line.lstrip("│ ").startswith(("├── ", "└── ")) and ":" not in line]
    assert groups == ["dataset", "model", "optimizer", "loss", "eval", "trainer"]
    assert any(line.rstrip().endswith("lr: 0.00031") for line in lines)
    assert any(line.rstrip().endswith("seed: 0") for line in lines)


def test_print_config_null_means_only_on_a_terminal() -> None:
    assert wants_config_tree(None) is False  # pytest captures stdout: no terminal
    assert wants_config_tree(True) is True
    assert wants_config_tree(False) is False
