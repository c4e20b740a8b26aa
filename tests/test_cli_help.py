"""Each Hydra tool's --help says what the tool does and lists only the config groups it reads, and a
user's own presets (--config-dir, hydra.searchpath) compose without editing the package."""

from __future__ import annotations

import contextlib
import functools
import io
import sys
from pathlib import Path
from typing import Callable

import pytest
import yaml
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig

from liver_gan.cli import CONFIG_DIR, evaluate, insert, prepare, sample, train, utility

# prog -> (its primary config in conf/, its entry point)
TOOLS = {
    "liver-gan-train": ("train", train.main),
    "liver-gan-prepare": ("prepare", prepare.main),
    "liver-gan-sample": ("sample", sample.main),
    "liver-gan-eval": ("evaluate", evaluate.main),
    "liver-gan-utility": ("utility", utility.main),
    "liver-gan-insert": ("insert", insert.main),
}
ALL_GROUPS = {path.name for path in Path(CONFIG_DIR).iterdir() if path.is_dir() and path.name != "hydra"}


@functools.cache
def run_cli(prog: str, *args: str) -> str:
    """What ``prog ARGS`` prints (Hydra ends --help with status 0, and returns after --cfg); cached,
    as Hydra's help lists every group's options, which takes seconds."""
    argv, sys.argv = sys.argv, [prog, *args]
    output = io.StringIO()
    try:
        with contextlib.redirect_stdout(output):
            TOOLS[prog][1]()
    except SystemExit as exit_info:
        assert exit_info.code == 0
    finally:
        sys.argv = argv
    return output.getvalue()


def listed_groups(help_text: str) -> dict[str, list[str]]:
    """group -> options, as the help's "Config groups" section lists them (the chosen one starred)."""
    section = help_text.split("== Config groups", 1)[1].split("\n", 1)[1].split("\n\n", 1)[0]
    lines = [line.strip() for line in section.splitlines() if ":" in line and not line.strip().startswith("(")]
    return {group: options.strip().split(", ") for group, options in (line.split(":", 1) for line in lines)}


@pytest.mark.parametrize("prog", TOOLS)
def test_help_says_what_the_tool_does_and_lists_only_its_own_groups(
    compose_config: Callable[..., DictConfig], prog: str
) -> None:
    text = run_cli(prog, "--help")
    assert text.startswith(f"{prog}: ")
    assert "Commands you will need most" in text and f"\n  {prog}" in text
    choices = compose_config([], config_name=TOOLS[prog][0]).hydra.runtime.choices
    own = {group for group in choices if not group.startswith("hydra/")}
    listed = listed_groups(text)
    assert set(listed) == own
    assert not set(listed) & (ALL_GROUPS - own)
    assert "base_" not in text and "_schema" not in text


def test_train_and_utility_help_name_their_groups_and_options() -> None:
    train_groups = listed_groups(run_cli("liver-gan-train", "--help"))
    assert "classifier" not in train_groups
    # The default run is experiment=quickstart, which picks the small DCGAN.
    assert train_groups["model"] == ["dcgan", "dcgan_small*", "ddpm", "inpaint", "mlp", "stylegan2"]
    assert "thesis" in train_groups["experiment"] and "quickstart*" in train_groups["experiment"]
    assert listed_groups(run_cli("liver-gan-utility", "--help")) == {"classifier": ["small_cnn*"], "segmenter": ["unet*"]}


@pytest.fixture
def user_conf(tmp_path: Path) -> Path:
    """A user's own config folder, laid out like conf/, with one experiment preset."""
    presets = tmp_path / "my_conf" / "experiment"
    presets.mkdir(parents=True)
    (presets / "my_preset.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /model: mlp\n\ntrainer:\n  epochs: 3\n"
    )
    return tmp_path / "my_conf"


def test_a_users_own_preset_composes_from_config_dir(user_conf: Path) -> None:
    job = yaml.safe_load(run_cli("liver-gan-train", "--config-dir", str(user_conf), "experiment=my_preset", "--cfg", "job"))
    assert job["trainer"]["epochs"] == 3 and job["model"]["_target_"].endswith("build_mlp_gan")
    help_text = run_cli("liver-gan-train", "--config-dir", str(user_conf), "--help")
    assert "my_preset" in listed_groups(help_text)["experiment"]


def test_a_users_own_preset_composes_through_hydra_searchpath_and_is_validated(
    compose_config: Callable[..., DictConfig], user_conf: Path
) -> None:
    searchpath = f"hydra.searchpath=[file://{user_conf}]"
    cfg = compose_config([searchpath, "experiment=my_preset"])
    assert cfg.trainer.epochs == 3 and cfg.hydra.runtime.choices["model"] == "mlp"
    (user_conf / "experiment" / "typo.yaml").write_text("# @package _global_\ntrainer:\n  epochz: 3\n")
    with pytest.raises(ConfigCompositionException):
        compose_config([searchpath, "experiment=typo"])
