"""The composed config as a tree on stdout, one branch per group, drawn by rich (``print_config``)."""

from __future__ import annotations

import sys

from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.syntax import Syntax
from rich.tree import Tree


def wants_config_tree(print_config: bool | None) -> bool:
    """``print_config`` as set, or, when null, whether stdout is a terminal (a log file gets none)."""
    return sys.stdout.isatty() if print_config is None else print_config


def print_config_tree(cfg: DictConfig) -> None:
    """Each group's YAML under its name, then the top-level values; interpolations resolved."""
    tree = Tree("config", guide_style="dim")
    groups = [key for key in cfg if isinstance(cfg[key], DictConfig)]
    for group in groups:
        tree.add(f"[bold]{group}[/bold]").add(yaml(cfg[group]))
    top_level = [key for key in cfg if key not in groups]
    if top_level:
        tree.add(yaml(OmegaConf.masked_copy(cfg, top_level)))
    Console(soft_wrap=True).print(tree)


def yaml(node: DictConfig) -> Syntax:
    # The terminal's own background: no padding to the full width.
    return Syntax(OmegaConf.to_yaml(node, resolve=True).rstrip(), "yaml", background_color="default")
