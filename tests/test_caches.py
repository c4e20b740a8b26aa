"""Cache housekeeping: what killed builds leave is cleaned by the next build under the same lock,
and ``liver-gan-cache`` lists and prunes entries without touching one that is being built."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import tomllib
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from liver_gan.atomic import build_lock
from liver_gan.cli.cache import main as cache_main
from liver_gan.data.cache import SliceTable, load_or_build
from liver_gan.data.phantom import phantom_key, write_phantom
from liver_gan.data.schema import PhantomConfig
from liver_gan.metrics.reference import ReferenceKey, reference_statistics

REPO_ROOT = Path(__file__).resolve().parents[1]
DATASET_KEY = "d" * 64
TINY_PHANTOM = PhantomConfig(num_volumes=1, in_plane=48, min_slices=8, max_slices=8, seed=3)


def slice_table(count: int = 3) -> SliceTable:
    """A tiny entry (under 1 KiB with its spacing array, so `cache list` shows it in bytes)."""
    return SliceTable(
        images=np.zeros((count, 4, 4), np.float16),
        labels=np.zeros(count, np.int8),
        patient_ids=np.zeros(count, np.int32),
        slice_indices=np.arange(count, dtype=np.int32),
        spacing=np.ones((count, 3), np.float32),
    )


def dataset_entry(cache_dir: Path, key: str = DATASET_KEY) -> Path:
    meta = {"per_patient": {}, "skipped": {}, "root": "/data/LiTS", "options": {"resolution": 4, "layout": "lits"}}
    return load_or_build(cache_dir, key, lambda: (slice_table(count=2), meta)).path


def reference_key() -> ReferenceKey:
    return ReferenceKey(DATASET_KEY, "tumor", "train", 3, 4, "0" * 64, "1" * 64, "cpu", "float32")


def reference_entry(cache_dir: Path) -> Path:
    reference_statistics(reference_key(), cache_dir, lambda: np.arange(15, dtype=np.float32).reshape(3, 5))
    return cache_dir / reference_key().digest()


def stale_temporary(path: Path) -> Path:
    """What a build of ``path`` killed mid-way leaves: a temporary folder holding part of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    stale = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    (stale / "part.npy").write_bytes(b"\0" * 4096)
    return stale


KILLED_BUILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from liver_gan.data.cache import load_or_build

    def build():
        print("building", flush=True)
        time.sleep(600)

    load_or_build(Path(sys.argv[1]), sys.argv[2], build)
    """
)


def test_a_killed_build_leaves_a_temporary_that_the_next_build_removes(tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    builder = subprocess.Popen(
        [sys.executable, "-c", KILLED_BUILD, str(cache_dir), DATASET_KEY], stdout=subprocess.PIPE, text=True
    )
    assert builder.stdout.readline().strip() == "building"
    os.kill(builder.pid, signal.SIGKILL)
    builder.wait(timeout=60)
    left = [path for path in cache_dir.iterdir() if path.name.endswith(".tmp")]
    assert len(left) == 1 and left[0].is_dir()

    entry = dataset_entry(cache_dir)

    assert sorted(path.name for path in cache_dir.iterdir()) == [entry.name, f"{entry.name}.lock"]


@pytest.mark.parametrize("cache", ["dataset", "reference", "phantom"])
def test_stale_temporaries_are_removed_by_the_next_build(tmp_path: Path, cache: str) -> None:
    builds: dict[str, Callable[[], Path]] = {
        "dataset": lambda: dataset_entry(tmp_path / "cache"),
        "reference": lambda: reference_entry(tmp_path / "cache"),
        "phantom": lambda: write_phantom(tmp_path / "cache", TINY_PHANTOM),
    }
    names = {
        "dataset": DATASET_KEY,
        "reference": reference_key().digest(),
        "phantom": f"phantom-{phantom_key(TINY_PHANTOM)}",
    }
    stale = stale_temporary(tmp_path / "cache" / names[cache])

    entry = builds[cache]()

    assert not stale.exists()
    assert sorted(path.name for path in entry.parent.iterdir()) == [entry.name, f"{entry.name}.lock"]


def test_a_damaged_dataset_entry_is_built_again(tmp_path: Path) -> None:
    entry = dataset_entry(tmp_path)
    (entry / "images.npy").write_bytes((entry / "images.npy").read_bytes()[:100])
    assert len(load_or_build(tmp_path, DATASET_KEY, lambda: (slice_table(5), {})).slices.images) == 5


def run_cache_cli(capsys: pytest.CaptureFixture[str], *args: str, cache_dir: Path) -> list[str]:
    folders = ["--dataset-cache-dir", str(cache_dir), "--eval-cache-dir", str(cache_dir / "reference_stats")]
    cache_main([*args, *folders])
    return capsys.readouterr().out.splitlines()


def make_old(path: Path, days: float) -> None:
    then = time.time() - days * 86400
    os.utime(path, (then, then))


def test_list_shows_each_entry_with_size_age_and_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dataset = dataset_entry(tmp_path / "cache")
    reference = reference_entry(tmp_path / "cache" / "reference_stats")
    stale_temporary(tmp_path / "cache" / ("e" * 64))
    make_old(dataset, 9)

    lines = run_cache_cli(capsys, "list", cache_dir=tmp_path / "cache")

    assert lines[0].split()[:5] == ["KIND", "KEY", "STATE", "SIZE", "UNUSED"]
    rows = {line.split()[1]: line for line in lines[1:]}
    assert rows.keys() == {DATASET_KEY[:12], reference.name[:12], "e" * 12}
    size = sum(path.stat().st_size for path in dataset.iterdir())
    assert size < 1024 and rows[DATASET_KEY[:12]].split()[:5] == ["dataset", DATASET_KEY[:12], "ok", f"{size}.0", "B"]
    assert "9 d" in rows[DATASET_KEY[:12]] and "root=/data/LiTS resolution=4 layout=lits" in rows[DATASET_KEY[:12]]
    assert "reference" in rows[reference.name[:12]] and "num_images=3" in rows[reference.name[:12]]
    assert rows["e" * 12].split()[:3] == ["dataset", "e" * 12, "stale"]


def test_prune_older_than_removes_only_entries_unused_that_long(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = dataset_entry(tmp_path / "cache", "a" * 64)
    used = dataset_entry(tmp_path / "cache", "b" * 64)
    make_old(old, 10)
    make_old(used, 10)
    dataset_entry(tmp_path / "cache", "b" * 64)  # a run reuses it today

    lines = run_cache_cli(capsys, "prune", "--yes", "--older-than", "7", cache_dir=tmp_path / "cache")

    assert lines == [f"removed {old}"]
    assert not old.exists() and used.is_dir()


def test_prune_never_touches_an_entry_being_built(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    entry = dataset_entry(tmp_path / "cache")
    building = reference_entry(tmp_path / "cache" / "reference_stats")
    holder = f"import time; from filelock import FileLock; lock = FileLock({str(building) + '.lock'!r}); lock.acquire()"
    lock = subprocess.Popen(  # another process holds the entry's build lock, as a running build does
        [sys.executable, "-c", f"{holder}; print('locked', flush=True); time.sleep(600)"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert lock.stdout.readline().strip() == "locked"
        lines = run_cache_cli(capsys, "prune", "--yes", "--all", cache_dir=tmp_path / "cache")
    finally:
        lock.kill()
        lock.wait(timeout=60)

    assert sorted(lines) == sorted([f"removed {entry}", f"skipped {building}: it is being built now"])
    assert not entry.exists() and (building / "key.json").is_file()
    with build_lock(building, timeout=0):  # released by the killed process, as after a crash
        pass


def test_prune_by_key_prefix_and_dry_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = dataset_entry(tmp_path / "cache", "a" * 64)
    second = dataset_entry(tmp_path / "cache", "b" * 64)

    assert run_cache_cli(capsys, "prune", "--dry-run", "aaaa", cache_dir=tmp_path / "cache") == [f"would remove {first}"]
    assert first.is_dir()
    assert run_cache_cli(capsys, "prune", "--yes", "aaaa", cache_dir=tmp_path / "cache") == [f"removed {first}"]
    assert not first.exists() and second.is_dir()
    with pytest.raises(SystemExit) as exit_info:
        run_cache_cli(capsys, "prune", "cccc", cache_dir=tmp_path / "cache")
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.startswith("liver-gan: error: no cache entry starts with 'cccc'")


def test_the_console_script_is_declared() -> None:
    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["liver-gan-cache"] == "liver_gan.cli.scripts:cache"
