"""Paths chosen by a checkpoint are never written to (issue 24, item 4): its phantom is synthesized and
its caches built under the current outputs/, and its saved folders are only read, when they hold the data."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import pytest
from omegaconf import DictConfig
from test_hostile_run_dir import checksums
from tiny_gan import save_tiny_checkpoint, tiny_phantom_overrides

from liver_gan.cli.sample import main as sample_main
from liver_gan.errors import LiverGanError
from liver_gan.runs import load_generator, run_dataset


def victim_run(compose_config: Callable[..., DictConfig], tmp_path: Path, *extra: str) -> Path:
    """A checkpoint whose config names dataset.root=<tmp>/victim and dataset.cache_dir=<tmp>/victim_cache."""
    overrides = [
        *tiny_phantom_overrides(tmp_path),
        f"dataset.root={tmp_path / 'victim'}",
        f"dataset.cache_dir={tmp_path / 'victim_cache'}",
        *extra,
    ]
    return save_tiny_checkpoint(compose_config, tmp_path / "train", overrides)


def test_a_checkpoint_naming_other_folders_writes_its_phantom_and_cache_under_the_current_outputs(
    compose_config: Callable[..., DictConfig], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The repro: such a checkpoint made the tools write phantom volumes, cache entries and locks there."""
    run = victim_run(compose_config, tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setattr(
        sys,
        "argv",
        ["liver-gan-sample", f"checkpoint={run}", "num_samples=2", "reject_memorised=true", "device=cpu",
         f"out={tmp_path / 'samples'}", f"hydra.run.dir={tmp_path / 'sample_run'}"],
    )
    sample_main()
    assert not (tmp_path / "victim").exists() and not (tmp_path / "victim_cache").exists()
    assert list((work / "outputs" / "phantom").glob("phantom-*/volume-0.nii.gz"))
    assert any((work / "outputs" / "cache").iterdir())


def test_saved_folders_that_hold_the_data_are_read_and_left_as_they_were(
    compose_config: Callable[..., DictConfig], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = victim_run(compose_config, tmp_path)
    _, train_cfg = load_generator(run, device="cpu")
    built = run_dataset(train_cfg, root=str(tmp_path / "victim"), cache_dir=str(tmp_path / "victim_cache"))
    before = {**checksums(tmp_path / "victim"), **checksums(tmp_path / "victim_cache")}
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)

    reread = run_dataset(train_cfg)

    assert reread.key == built.key and len(reread.train) == len(built.train)
    assert {**checksums(tmp_path / "victim"), **checksums(tmp_path / "victim_cache")} == before
    assert not (work / "outputs").exists()


def test_a_checkpoint_of_real_data_missing_here_is_refused_naming_the_option(
    compose_config: Callable[..., DictConfig], tmp_path: Path
) -> None:
    run = victim_run(compose_config, tmp_path, "dataset.name=lits")
    _, train_cfg = load_generator(run, device="cpu")
    with pytest.raises(LiverGanError, match=r"victim \(from the run's config\) is no folder here; .*dataset.root=DIR"):
        run_dataset(train_cfg)
    assert not (tmp_path / "victim").exists() and not (tmp_path / "victim_cache").exists()


def test_the_user_names_the_runs_data_on_the_command_line(
    compose_config: Callable[..., DictConfig], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = victim_run(compose_config, tmp_path)
    mine, my_cache = tmp_path / "my_phantom", tmp_path / "my_cache"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(
        sys,
        "argv",
        ["liver-gan-sample", f"checkpoint={run}", "num_samples=2", "reject_memorised=true", "device=cpu",
         f"dataset.root={mine}", f"dataset.cache_dir={my_cache}", f"out={tmp_path / 'samples'}",
         f"hydra.run.dir={tmp_path / 'sample_run'}"],
    )
    sample_main()
    assert list(mine.glob("phantom-*/volume-0.nii.gz")) and any(my_cache.iterdir())
    assert not (tmp_path / "victim").exists() and not (tmp_path / "outputs").exists()
