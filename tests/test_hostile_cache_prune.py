"""``liver-gan-cache prune`` deletes only what the cache can prove it wrote, and lists before deleting
(issue 24, item 5)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_caches import dataset_entry, reference_entry, run_cache_cli
from test_hostile_run_dir import checksums

from liver_gan.atomic import CACHE_ENTRY_MARKER


def user_folders(cache_dir: Path) -> list[Path]:
    """The repro: an nnU-Net export and a phantom in the cache folder, each with a .lock beside it."""
    export = cache_dir / "Dataset901_SynthLiver"
    phantom = cache_dir / "phantom-0123456789ab"
    for folder in (export, phantom):
        folder.mkdir(parents=True)
        (folder / "dataset.json").write_text("{}")
        (cache_dir / f"{folder.name}.lock").touch()
    return [export, phantom]


def test_prune_all_leaves_folders_the_cache_did_not_write(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cache_dir = tmp_path / "cache"
    entry = dataset_entry(cache_dir)
    assert (entry / CACHE_ENTRY_MARKER).is_file()
    damaged = dataset_entry(cache_dir, "e" * 64)
    (damaged / "images.npy").write_bytes(b"truncated")
    theirs = user_folders(cache_dir)
    before = {folder.name: checksums(folder) for folder in theirs}

    lines = run_cache_cli(capsys, "prune", "--yes", "--all", cache_dir=cache_dir)

    assert sorted(lines) == sorted([f"removed {entry}", f"removed {damaged}"])
    assert {folder.name: checksums(folder) for folder in theirs} == before


def test_prune_lists_first_and_deletes_nothing_without_yes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cache_dir = tmp_path / "cache"
    entry = dataset_entry(cache_dir)
    reference = reference_entry(cache_dir / "reference_stats")
    with pytest.raises(SystemExit) as exit_info:
        run_cache_cli(capsys, "prune", "--all", cache_dir=cache_dir)
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    assert sorted(captured.out.splitlines()) == sorted([f"would remove {entry}", f"would remove {reference}"])
    assert "pass --yes" in captured.err and len(captured.err.strip().splitlines()) == 1
    assert entry.is_dir() and reference.is_dir()

    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda prompt: "y")
    assert f"removed {entry}" in run_cache_cli(capsys, "prune", "--all", cache_dir=cache_dir)
    assert not entry.exists()
