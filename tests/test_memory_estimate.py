"""Sizes that cannot fit in memory are refused from an estimate, before anything is allocated
(issue 24): a model's weights counted on the meta device, and the slice cache of liver-gan-prepare."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
from omegaconf import DictConfig
from tiny_gan import tiny_phantom_overrides

import liver_gan.memory
from liver_gan.cli.prepare import main as prepare_main
from liver_gan.errors import LiverGanError
from liver_gan.memory import available_bytes
from liver_gan.models.memory import weight_bytes
from liver_gan.models.registry import _call_builder, build_generator

FAMILIES = [
    ["model=mlp"],
    ["model=dcgan_small", "model.conditional=true"],
    ["model=dcgan", "dataset.masks=true"],
    ["model=stylegan2", "dataset.resolution=32"],
    ["model=ddpm", "dataset.resolution=32"],
    ["model=inpaint", "dataset.masks=true"],
]


def real_bytes(built: Any) -> int:
    modules = built if isinstance(built, tuple) else (built,)
    tensors = itertools.chain.from_iterable(itertools.chain(module.parameters(), module.buffers()) for module in modules)
    return sum(tensor.numel() * tensor.element_size() for tensor in tensors)


@pytest.mark.parametrize("overrides", FAMILIES, ids=lambda overrides: " ".join(overrides))
def test_the_meta_estimate_is_the_built_models_size(overrides: list[str], compose_config: Callable[..., DictConfig]) -> None:
    cfg = compose_config(overrides)
    estimate = weight_bytes(lambda: _call_builder(cfg))
    assert estimate > 0
    assert estimate == real_bytes(_call_builder(cfg))


def test_the_estimate_draws_no_random_numbers(compose_config: Callable[..., DictConfig]) -> None:
    """Seeded runs build the same weights whether or not their size was estimated first."""
    cfg = compose_config(["model=dcgan_small"])
    torch.manual_seed(0)
    weight_bytes(lambda: _call_builder(cfg))
    after_estimate = torch.randn(3)
    torch.manual_seed(0)
    assert torch.equal(after_estimate, torch.randn(3))


def with_memory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, kib: int) -> None:
    """This machine as one with ``kib`` KiB available, as Linux's /proc/meminfo says it."""
    meminfo = tmp_path / "meminfo"
    meminfo.write_text(f"MemTotal:       99999999 kB\nMemFree:          1000 kB\nMemAvailable:   {kib} kB\n")
    monkeypatch.setattr(liver_gan.memory, "MEMINFO", meminfo)


def test_available_memory_is_linuxs_mem_available(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with_memory(monkeypatch, tmp_path, 2048)
    assert available_bytes() == 2048 * 1024


def test_a_model_larger_than_the_memory_is_refused_before_it_is_built(
    compose_config: Callable[..., DictConfig], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """dcgan_small's weights (about 6.8 MiB) on a machine with 4 MiB left: refused, with the estimate."""
    with_memory(monkeypatch, tmp_path, 4096)
    built_on: list[str] = []
    real_empty = torch.empty

    def recording_empty(*args: Any, **kwargs: Any) -> torch.Tensor:
        tensor = real_empty(*args, **kwargs)
        built_on.append(tensor.device.type)
        return tensor

    monkeypatch.setattr(torch, "empty", recording_empty)
    with pytest.raises(LiverGanError, match=r"the dcgan model at dataset\.resolution=64, its weights: about "
                                            r"6\.8 MiB needed, more than the 4\.0 MiB of memory available on this machine; use smaller"):
        build_generator(compose_config(["model=dcgan_small"]))
    assert built_on and set(built_on) == {"meta"}  # every parameter was a shape only


def test_two_to_the_forty_widths_are_refused_by_the_estimate(compose_config: Callable[..., DictConfig]) -> None:
    with pytest.raises(LiverGanError, match=r"the mlp model at dataset\.resolution=64, its weights: about \d+\.\d GiB needed, more than"):
        build_generator(compose_config(["model=mlp", "model.generator_widths=[1099511627776]"]))


def test_prepare_refuses_a_slice_cache_larger_than_the_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """dataset.resolution=100000: the cache's size from the volumes' headers, refused before slicing."""
    overrides = [*tiny_phantom_overrides(tmp_path)[6:], "dataset.resolution=100000"]
    monkeypatch.setattr(sys, "argv", ["liver-gan-prepare", *overrides, f"hydra.run.dir={tmp_path / 'run'}"])
    with pytest.raises(SystemExit) as exit_info:
        prepare_main()
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1, err
    # 6 phantom volumes of 16-20 slices each: at most 120 slices of 4e10 bytes.
    assert "dataset.resolution=100000: the slice cache of up to" in err and "lower dataset.resolution" in err, err
    slices = int(err.split("up to ")[1].split()[0])
    assert 6 * 16 <= slices <= 6 * 20
    assert not list((tmp_path / "cache").glob("*/images.npy"))
