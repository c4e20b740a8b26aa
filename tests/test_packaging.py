"""The package as a user installs it: a wheel built from the checkout (through its sdist, as
``python -m build`` does), installed into a fresh virtualenv, runs from a directory outside the
checkout with the conf/ it carries."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
NOT_SOURCE = shutil.ignore_patterns(
    ".git", "outputs", "multirun", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".venv", "venv"
)


def build(hook: str, source: Path, out: Path) -> Path:
    """Run setuptools' PEP 517 ``hook`` in ``source`` with the installed setuptools (offline)."""
    script = f"from setuptools import build_meta; print(build_meta.{hook}({str(out)!r}))"
    result = subprocess.run([sys.executable, "-c", script], cwd=source, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return out / result.stdout.split()[-1]


def build_wheel_through_sdist(tmp_path: Path) -> Path:
    source = tmp_path / "checkout"
    shutil.copytree(REPO_ROOT, source, ignore=NOT_SOURCE)
    sdist = build("build_sdist", source, tmp_path / "dist")
    with tarfile.open(sdist) as archive:
        archive.extractall(tmp_path / "unpacked", filter="data")
    (unpacked,) = (tmp_path / "unpacked").iterdir()
    return build("build_wheel", unpacked, tmp_path / "dist")


def fresh_venv(directory: Path, wheel: Path) -> Path:
    """A venv holding only the wheel; its dependencies (torch, hydra...) are read from this
    interpreter's site-packages through a .pth file, so nothing is downloaded."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", directory], check=True, timeout=300)
    python = directory / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True, check=True
    ).stdout.strip()
    (Path(purelib) / "dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-index", wheel],
        check=True,
        timeout=300,
    )
    return directory / "bin"


@pytest.mark.slow
def test_a_built_wheel_runs_from_outside_the_checkout(tmp_path: Path) -> None:
    wheel = build_wheel_through_sdist(tmp_path)
    files = zipfile.ZipFile(wheel).namelist()
    assert {"liver_gan/conf/train.yaml", "liver_gan/conf/model/dcgan.yaml", "liver_gan/conf/hydra/help/liver_gan.yaml"} <= set(files)
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in files)
    metadata = zipfile.ZipFile(wheel).read(next(name for name in files if name.endswith(".dist-info/METADATA"))).decode()
    assert "License-Expression: Apache-2.0" in metadata

    bin_dir = fresh_venv(tmp_path / "venv", wheel)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}

    def run(*command: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(command, cwd=elsewhere, env=env, capture_output=True, text=True, timeout=600)

    where = run(bin_dir / "python", "-c", "from liver_gan.cli import CONFIG_DIR; print(CONFIG_DIR)")
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(tmp_path / "venv")

    help_text = run(bin_dir / "liver-gan-train", "--help")
    assert help_text.returncode == 0, help_text.stderr
    assert help_text.stdout.startswith("liver-gan-train: ") and "model: dcgan, dcgan_small*, ddpm, inpaint, mlp" in help_text.stdout

    smoke = run(bin_dir / "liver-gan-train", "debug=smoke", "eval.enabled=false", "trainer.device=cpu")
    assert smoke.returncode == 0, smoke.stderr[-3000:]
    (run_dir,) = (elsewhere / "outputs" / "train").iterdir()
    assert (run_dir / "checkpoints" / "last.pt").is_file() and (run_dir / "metrics.json").is_file()
