"""Exports never replace a user's files (issue 24, item 2): png, npy and ``export=imagefolder`` refuse a
taken name, ``overwrite=true`` replaces only what an earlier export's manifest lists, and two exports
never write into one folder at once."""

from __future__ import annotations

import fcntl
import os
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from nifti_factory import write_lits_dataset
from omegaconf import DictConfig
from test_hostile_run_dir import checksums
from tiny_gan import save_tiny_checkpoint, tiny_phantom_overrides

from liver_gan.atomic import EXPORT_MANIFEST, write_export
from liver_gan.cli.sample import main as sample_main
from liver_gan.data.dataset import prepare_dataset
from liver_gan.data.export import export_imagefolder
from liver_gan.errors import LiverGanError


@pytest.fixture
def conditional_run(compose_config: Callable[..., DictConfig], tmp_path: Path) -> Path:
    overrides = [*tiny_phantom_overrides(tmp_path), "model.conditional=true", "dataset.subset=all"]
    return save_tiny_checkpoint(compose_config, tmp_path / "train", overrides)


def sample(monkeypatch: pytest.MonkeyPatch, run: Path, out: Path, *overrides: str) -> None:
    monkeypatch.setattr(
        sys,
        "argv",
        ["liver-gan-sample", f"checkpoint={run}", "num_samples=2", f"out={out}", "device=cpu",
         f"hydra.run.dir={out.parent / 'sample_run'}", *overrides],
    )
    sample_main()


def user_export_folder(out: Path) -> None:
    """The repro's folder: a figure of the user's inside healthy/, and two .npy files of the user's."""
    (out / "healthy").mkdir(parents=True)
    (out / "healthy" / "my_figure.png").write_bytes(b"the user's figure")
    np.save(out / "healthy.npy", np.arange(3))
    np.save(out / "tumor.npy", np.arange(4))


@pytest.mark.parametrize("export_format", ["png", "npy"])
@pytest.mark.parametrize("overwrite", ["false", "true"])
def test_sample_refuses_to_replace_a_users_files(
    conditional_run: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    export_format: str,
    overwrite: str,
) -> None:
    out = tmp_path / "E"
    user_export_folder(out)
    before = checksums(out)
    with pytest.raises(SystemExit) as exit_info:
        sample(monkeypatch, conditional_run, out, f"format={export_format}", f"overwrite={overwrite}")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nothing was overwritten" in err
    assert checksums(out) == before
    assert sorted(path.name for path in out.iterdir()) == ["healthy", "healthy.npy", "tumor.npy"]  # no temporary, no lock


def test_overwrite_replaces_an_earlier_export_but_not_a_file_the_user_added(
    conditional_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "E"
    sample(monkeypatch, conditional_run, out)
    first = checksums(out)
    assert "healthy/00000.png" in first and EXPORT_MANIFEST in first
    assert not list(out.glob("*.lock"))

    with pytest.raises(SystemExit):
        sample(monkeypatch, conditional_run, out)  # without overwrite=true: refused
    assert checksums(out) == first

    sample(monkeypatch, conditional_run, out, "seed=1", "overwrite=true")
    second = checksums(out)
    assert second.keys() == first.keys() and second["healthy.npy"] != first["healthy.npy"]

    (out / "tumor" / "my_notes.txt").write_text("mine")
    kept = checksums(out)
    with pytest.raises(SystemExit):
        sample(monkeypatch, conditional_run, out, "seed=2", "overwrite=true")
    assert checksums(out) == kept


def test_an_export_into_a_folder_another_export_writes_into_is_refused(tmp_path: Path) -> None:
    """Two concurrent exports: the second finds the folder held and refuses, instead of replacing the first."""
    out = tmp_path / "E"
    out.mkdir()
    holder = os.open(out, os.O_RDONLY)
    fcntl.flock(holder, fcntl.LOCK_EX)
    try:
        with pytest.raises(LiverGanError, match="another liver-gan export is writing"):
            write_export(out, lambda tmp: (tmp / "samples.npy").write_bytes(b"x"))
    finally:
        os.close(holder)
    assert list(out.iterdir()) == []


def test_imagefolder_export_refuses_a_folder_holding_the_users_images(
    tmp_path: Path, compose_config: Callable[..., DictConfig]
) -> None:
    root = write_lits_dataset(tmp_path / "LiTS", range(1, 4))
    cfg = compose_config(
        ["dataset=lits", f"dataset.root='{root}'", f"dataset.cache_dir='{tmp_path / 'cache'}'", "dataset.resolution=16",
         "dataset.subset=all", "dataset.val_fraction=0.4"],
        config_name="prepare",
    )
    prepared = prepare_dataset(cfg.dataset, seed=0)
    folder = tmp_path / "run" / "imagefolder"
    (folder / "train" / "healthy").mkdir(parents=True)
    (folder / "train" / "healthy" / "my_own.png").write_bytes(b"the user's image")
    before = checksums(folder)
    for overwrite in (False, True):
        with pytest.raises(LiverGanError, match="my_own.png|exists already"):
            export_imagefolder(prepared, folder, overwrite)
        assert checksums(folder) == before

    fresh = export_imagefolder(prepared, tmp_path / "run2" / "imagefolder")
    assert any((fresh / "train" / "healthy").glob("p*_s*.png"))
    replaced = export_imagefolder(prepared, fresh, overwrite=True)
    assert replaced == fresh and any((fresh / "val").rglob("*.png"))
