"""Shared fixtures: offline FID weights through a temporary TORCH_HOME, config composition, and
one tiny phantom (with its dataset cache and reference statistics) for the whole session."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable, Iterator

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from tiny_gan import tiny_phantom_overrides

from liver_gan.cli import CONFIG_DIR
from liver_gan.config import register_configs

Compose = Callable[..., DictConfig]

REPO_ROOT = Path(__file__).resolve().parents[1]
FID_WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"


def _find_fid_weights() -> Path | None:
    """The verified offline copy: an already-filled $TORCH_HOME (CI), else ../shared/fid/."""
    candidates = []
    if os.environ.get("TORCH_HOME"):
        candidates.append(Path(os.environ["TORCH_HOME"]) / "hub" / "checkpoints" / FID_WEIGHTS_NAME)
    candidates.append(REPO_ROOT.parent / "shared" / "fid" / FID_WEIGHTS_NAME)
    return next((path for path in candidates if path.is_file()), None)


@pytest.fixture(autouse=True)
def restore_root_logging() -> Iterator[None]:
    """Drop the log handlers an in-process Hydra app added, so that no later test writes to a
    stream that pytest's capture has already closed."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in [handler for handler in root.handlers if handler not in handlers]:
        root.removeHandler(handler)
        handler.close()
    root.setLevel(level)


@pytest.fixture(scope="session", autouse=True)
def isolated_torch_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Point TORCH_HOME at a temporary directory for the whole session.

    Its hub/checkpoints/ links the offline Inception weights when a copy exists, so nothing
    downloads and the user's own torch cache is never touched.
    """
    torch_home = tmp_path_factory.mktemp("torch_home")
    source = _find_fid_weights()
    if source is not None:
        checkpoints = torch_home / "hub" / "checkpoints"
        checkpoints.mkdir(parents=True)
        (checkpoints / FID_WEIGHTS_NAME).symlink_to(source.resolve())
    previous = os.environ.get("TORCH_HOME")
    os.environ["TORCH_HOME"] = str(torch_home)
    yield torch_home
    if previous is None:
        os.environ.pop("TORCH_HOME", None)
    else:
        os.environ["TORCH_HOME"] = previous


@pytest.fixture
def fid_weights(isolated_torch_home: Path) -> Path:
    """The Inception weights file; tests that need real weights skip only when none exists."""
    path = isolated_torch_home / "hub" / "checkpoints" / FID_WEIGHTS_NAME
    if not path.exists():
        pytest.skip(f"no offline copy of {FID_WEIGHTS_NAME} in $TORCH_HOME or ../shared/fid/")
    return path


@pytest.fixture(scope="session")
def compose_config() -> Compose:
    """Compose a primary config (``train`` = training) with overrides, as the CLI would.

    With ``hydra=True`` (the default) Hydra's node is kept, as the task functions read the run
    mode from it; ``hydra=False`` gives the task config that ``train()`` and the tools take.
    """
    register_configs()

    def _compose(overrides: list[str] | None = None, config_name: str = "train", hydra: bool = True) -> DictConfig:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            return compose(config_name=config_name, overrides=list(overrides or []), return_hydra_config=hydra)

    return _compose


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's tiny phantom, its dataset cache and reference statistics: built by the first
    test that trains on them, reused by every later one."""
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="session")
def tiny_phantom(data_dir: Path) -> list[str]:
    """Overrides for a tiny MLP on the tiny phantom in ``data_dir`` (see ``tiny_phantom_overrides``),
    with the reference statistics there too."""
    return [*tiny_phantom_overrides(data_dir), f"eval.cache_dir={data_dir / 'reference'}"]
