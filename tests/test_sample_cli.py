"""liver-gan-sample: N PNGs and a .npy stack at the model's resolution, per class when conditional."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Callable, List

import numpy as np
import pytest
import torch
from omegaconf import DictConfig
from PIL import Image

from liver_gan.cli.sample import main as sample_main
from liver_gan.images import to_uint8
from tiny_gan import save_tiny_checkpoint, tiny_phantom_overrides


def run_sample(monkeypatch: pytest.MonkeyPatch, run_dir: Path, *overrides: str) -> None:
    monkeypatch.setattr(sys, "argv", ["liver-gan-sample", *overrides, f"hydra.run.dir={run_dir}", "device=cpu"])
    sample_main()


def tiny_run(compose_config: Callable[..., DictConfig], tmp_path: Path, extra: List[str]) -> Path:
    return save_tiny_checkpoint(compose_config, tmp_path / "train", tiny_phantom_overrides(tmp_path) + extra)


def check_stack(out: Path, name: str, count: int, resolution: int) -> np.ndarray:
    """The stack's shape, dtype and range, and that its PNGs hold exactly its 8-bit levels."""
    stack = np.load(out / f"{name}.npy")
    assert stack.shape == (count, 1, resolution, resolution) and stack.dtype == np.float32
    assert stack.min() >= -1 and stack.max() <= 1 and stack.std() > 0
    pngs = sorted((out / name).glob("*.png"))
    assert len(pngs) == count
    first = Image.open(pngs[0])
    assert first.mode == "L" and first.size == (resolution, resolution)
    assert np.array_equal(np.asarray(first), to_uint8(torch.from_numpy(stack[:1]))[0, 0].numpy())
    return stack


def test_sample_writes_the_count_shape_and_range_into_the_run_dir(
    compose_config: Callable[..., DictConfig], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train_dir = tiny_run(compose_config, tmp_path, [])
    run_sample(monkeypatch, tmp_path / "sample", f"checkpoint={train_dir}", "num_samples=5", "batch_size=2")
    check_stack(tmp_path / "sample", "samples", count=5, resolution=32)


def test_conditional_sample_writes_each_class_reproducibly_from_its_seed(
    compose_config: Callable[..., DictConfig], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train_dir = tiny_run(compose_config, tmp_path, ["model.conditional=true"])
    checkpoint = train_dir / "checkpoints" / "last.pt"
    for out in ("a", "b"):
        run_sample(monkeypatch, tmp_path / "sample", f"checkpoint={checkpoint}", "num_samples=3", f"out={tmp_path / out}")
    stacks = {name: check_stack(tmp_path / "a", name, count=3, resolution=32) for name in ("healthy", "tumor")}
    assert not np.array_equal(stacks["healthy"], stacks["tumor"])  # the label changes the image
    for name, stack in stacks.items():
        assert np.array_equal(np.load(tmp_path / "b" / f"{name}.npy"), stack)
    assert not (tmp_path / "a" / "samples.npy").exists()


def test_sample_without_a_checkpoint_exits_2_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    for overrides in ([], [f"checkpoint={tmp_path / 'nowhere'}"]):
        with pytest.raises(SystemExit) as exit_info:
            run_sample(monkeypatch, tmp_path / "sample", *overrides)
        assert exit_info.value.code == 2
        error = capsys.readouterr().err.strip()
        assert error.startswith("liver-gan: error:") and "\n" not in error and "checkpoint" in error


def test_reject_memorised_says_how_many_it_dropped(
    tmp_path: Path, compose_config: Callable[..., DictConfig], tiny_phantom: list[str]
) -> None:
    run = save_tiny_checkpoint(compose_config, tmp_path / "gan", tiny_phantom)
    # Pixel RMS distances lie in [0, 2]: 5.0 drops every sample, 0 none.
    for threshold, dropped in (("5.0", 8), ("0", 0)):
        out = tmp_path / f"out_{threshold}"
        result = subprocess.run(
            [
                sys.executable, "-c", "from liver_gan.cli.sample import main; main()", f"checkpoint={run}",
                "num_samples=8", f"out={out}", f"hydra.run.dir={tmp_path / 'hydra'}", "reject_memorised=true",
                f"memorisation_threshold={threshold}",
            ],
            capture_output=True, text=True, timeout=300,
        )
        assert result.returncode == 0, result.stderr
        assert f"samples: dropped {dropped} of 8" in result.stdout
        assert len(list((out / "samples").glob("*.png"))) == 8 - dropped
