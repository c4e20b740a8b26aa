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

from liver_gan.cli.sample import MemorisationFilter, without_memorised
from liver_gan.cli.sample import main as sample_main
from liver_gan.images import to_uint8
from liver_gan.training.family import build_family
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


def test_reject_memorised_says_how_many_it_rejected(
    tmp_path: Path, compose_config: Callable[..., DictConfig], tiny_phantom: list[str]
) -> None:
    run = save_tiny_checkpoint(compose_config, tmp_path / "gan", tiny_phantom)
    # Pixel RMS distances lie in [0, 2]: 5.0 rejects every sample (the 8 asked, then 2 new draws of 8), 0 none.
    for threshold, kept, rejected in (("5.0", 0, 24), ("0", 8, 0)):
        out = tmp_path / f"out_{threshold}"
        result = subprocess.run(
            [
                sys.executable, "-c", "from liver_gan.cli.sample import main; main()", f"checkpoint={run}",
                "num_samples=8", f"out={out}", f"hydra.run.dir={tmp_path / 'hydra'}", "reject_memorised=true",
                f"memorisation_threshold={threshold}", "reject_max_draws=2",
            ],
            capture_output=True, text=True, timeout=300,
        )
        assert result.returncode == 0, result.stderr
        assert f"samples: rejected {rejected} samples" in result.stdout and f"kept {kept} of 8" in result.stdout
        assert ("only 0 of 8 samples are not near-copies after reject_max_draws=2" in result.stderr) == (kept == 0)
        assert len(list((out / "samples").glob("*.png"))) == kept


def test_seeds_give_one_image_per_seed_the_same_in_any_range(
    compose_config: Callable[..., DictConfig], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train_dir = tiny_run(compose_config, tmp_path, [])
    for name, seeds in (("a", "0-3"), ("b", "2-5"), ("c", "'3,2'")):
        overrides = [f"checkpoint={train_dir}", f"seeds={seeds}", "batch_size=3", f"out={tmp_path / name}"]
        run_sample(monkeypatch, tmp_path / "sample", *overrides)
    a, b, c = (check_stack(tmp_path / name, "samples", count, resolution=32) for name, count in (("a", 4), ("b", 4), ("c", 2)))
    # Equal up to the last bits of float32 that a batch's matrix products may round differently.
    assert np.allclose(a[2:], b[:2], atol=1e-5) and np.allclose(c, a[[3, 2]], atol=1e-5)
    assert not np.allclose(a[0], a[1], atol=1e-3)


def test_interpolate_walks_from_seed_to_seed_and_writes_its_grid(
    compose_config: Callable[..., DictConfig], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train_dir = tiny_run(compose_config, tmp_path, [])
    run_sample(monkeypatch, tmp_path / "sample", f"checkpoint={train_dir}", "seeds='0,3,5'", f"out={tmp_path / 'ends'}")
    walk_overrides = ["interpolate=[0,3,5]", "interpolate_steps=4", f"out={tmp_path / 'walk'}"]
    run_sample(monkeypatch, tmp_path / "sample", f"checkpoint={train_dir}", *walk_overrides)
    ends = np.load(tmp_path / "ends" / "samples.npy")
    walk = check_stack(tmp_path / "walk", "samples", count=8, resolution=32)
    assert np.allclose(walk[[0, 3, 4, 7]], ends[[0, 1, 1, 2]], atol=1e-5)
    assert not np.allclose(walk[1], walk[0], atol=1e-3)
    with Image.open(tmp_path / "walk" / "samples_interpolation.png") as grid:
        assert grid.size == (4 * 34 + 2, 2 * 34 + 2)


def test_reject_memorised_tops_up_to_the_number_asked(capsys: pytest.CaptureFixture) -> None:
    """3 of the 8 first samples copy a training slice: one new draw makes up the 8, all far from it."""
    train = torch.rand(4, 1, 8, 8) * 2 - 1
    far = torch.ones(8, 1, 8, 8)  # RMS distance about 1.15 from uniform [-1, 1] slices
    first = torch.cat([train[:3], far[:5]])
    draws = []

    def draw(number: int, count: int) -> torch.Tensor:
        draws.append((number, count))
        return far[:count]

    kept = without_memorised("samples", first, draw, MemorisationFilter(train, threshold=0.05), max_draws=5)
    assert len(kept) == 8 and draws == [(1, 3)]
    assert "samples: rejected 3 samples" in capsys.readouterr().out


@pytest.mark.parametrize("family", ["mlp", "dcgan", "stylegan2"])
def test_truncation_psi_0_gives_the_average_image_and_1_the_usual_one(
    compose_config: Callable[..., DictConfig], family: str
) -> None:
    cfg = compose_config([f"model={family}", "dataset.resolution=16"], hydra=False)
    generator = build_family(cfg, torch.device("cpu")).generator.eval()
    z = torch.randn(3, generator.latent_dim)
    with torch.no_grad():
        assert torch.equal(generator(z, None, truncation_psi=1.0), generator(z))
        average = generator(z, None, truncation_psi=0.0)
        half = generator(z, None, truncation_psi=0.5)
    assert torch.allclose(average[0], average[1], atol=1e-5) and torch.allclose(average[0], average[2], atol=1e-5)
    assert not torch.allclose(half[0], half[1], atol=1e-4)
