"""Atomic writes and build locks, so that an interrupted run or a concurrent sweep job never
leaves a half-written checkpoint, cache entry or metrics file behind.

Every temporary is named ``.<name>.<8 random characters>.tmp`` beside the ``<name>`` it becomes,
so what a killed writer left behind is recognised, and removed by the next build of the same
``<name>`` under the same lock.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch
from filelock import FileLock, Timeout

from liver_gan.errors import LiverGanError

log = logging.getLogger(__name__)


TEMPORARY_SUFFIX = ".tmp"
LOCK_SUFFIX = ".lock"
# Written first into every cache entry a build makes: liver-gan-cache prunes only folders holding it.
CACHE_ENTRY_MARKER = ".liver-gan-cache-entry"
# What an export wrote into its out folder, file by file: what overwrite=true may replace there.
EXPORT_MANIFEST = ".liver-gan-export.json"
# mkstemp / mkdtemp put 8 characters of this alphabet between the prefix and the suffix.
_TEMPORARY_NAME = re.compile(rf"\.(.+)\.[a-z0-9_]{{8}}{re.escape(TEMPORARY_SUFFIX)}")


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


@contextlib.contextmanager
def user_fixable_write_errors(path: Path) -> Iterator[None]:
    """Turn a full disk or an unwritable folder met while writing ``path`` into one line that says so.

    The writes are atomic, so the message can promise that what was there before is intact.
    """
    try:
        yield
    except OSError as error:
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise LiverGanError(
                f"disk full at {path}: free some space (or choose another folder) and run again; files already there are intact"
            ) from None
        if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise LiverGanError(
                f"cannot write {path} ({error.strerror}): choose a folder you can write to; nothing there was changed"
            ) from None
        raise


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` on a temporary file next to ``path``, then rename it over ``path``."""
    path = Path(path)
    with user_fixable_write_errors(path):
        _atomic_write(path, write)


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        # mkstemp makes the file private (0600); give it the mode a plain open() would have.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False) + "\n")


def atomic_torch_save(obj: Any, path: Path) -> None:
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


@contextlib.contextmanager
def atomic_directory(path: Path) -> Iterator[Path]:
    """Yield a temporary directory that becomes ``path`` only if the block finishes.

    The caller holds :func:`build_lock` for ``path``, so any temporary of ``path`` still there is
    a killed build's, and is removed first; an existing ``path`` is replaced.
    """
    path = Path(path)
    with user_fixable_write_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX, dir=path.parent))
    try:
        with user_fixable_write_errors(path):
            yield tmp
            os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private (0700)
            remove_directory(path)
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def build_lock(path: Path, timeout: float = -1) -> FileLock:
    """An inter-process lock for building ``path`` (a file ``<path>.lock`` beside it).

    ``timeout=0`` tries once: acquiring it then raises ``filelock.Timeout`` while a build runs.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path.parent / f"{path.name}{LOCK_SUFFIX}"), timeout=timeout)


def build_once(
    path: Path, build: Callable[[Path], None], is_complete: Callable[[Path], bool] = Path.is_dir
) -> bool:
    """Make the directory ``path`` once, however many processes ask for it at the same time.

    Check, lock, check again (another process may have finished it while this one waited), then
    ``build(tmp)`` into a temporary directory that is renamed to ``path`` only when complete.
    An existing ``path`` that ``is_complete`` rejects (damaged, or left half-deleted by hand) is
    built again. A usable ``path`` gets its modification time set to now, so that
    ``liver-gan-cache`` can tell when an entry was last used. Returns whether this call built it.
    """
    path = Path(path)
    if not is_complete(path):
        with user_fixable_write_errors(path), build_lock(path):
            if not is_complete(path):
                if path.exists():
                    log.warning("%s is incomplete or damaged: building it again", path)
                with atomic_directory(path) as tmp:
                    build(tmp)
                return True
    _mark_used(path)
    return False


def mark_cache_entry(directory: Path) -> None:
    """Mark the folder a cache build is writing as a cache entry, before anything else goes in, so
    that even a damaged or half-built entry is known to be the cache's own."""
    (Path(directory) / CACHE_ENTRY_MARKER).touch()  # empty: its name is the proof


def is_marked_cache_entry(path: Path) -> bool:
    return (Path(path) / CACHE_ENTRY_MARKER).is_file()


def _mark_used(path: Path) -> None:
    with contextlib.suppress(OSError):  # a read-only shared cache is still usable
        os.utime(path)


def temporaries_of(path: Path) -> list[Path]:
    """The temporary files and folders of ``path`` (see the module's docstring), live or stale."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    return sorted(item for item in path.parent.iterdir() if temporary_of(item) == path)


def temporary_of(item: Path) -> Path | None:
    """The path that the temporary ``item`` was to become, or None if ``item`` is no temporary."""
    match = _TEMPORARY_NAME.fullmatch(Path(item).name)
    return None if match is None else Path(item).parent / match.group(1)


def remove_stale_temporaries(path: Path) -> None:
    """Remove the temporaries a killed writer of ``path`` left behind.

    Call it only while holding :func:`build_lock` for ``path``: no live writer has one then.
    """
    for stale in temporaries_of(path):
        log.info("removing %s, left by an interrupted build", stale)
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


def remove_directory(path: Path) -> None:
    """Delete the directory ``path``, first renaming it to a temporary name, so that a reader
    sees the whole of it or nothing. The caller holds :func:`build_lock` for ``path``."""
    path = Path(path)
    if path.exists():
        doomed = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=TEMPORARY_SUFFIX, dir=path.parent))
        os.replace(path, doomed)
        shutil.rmtree(doomed, ignore_errors=True)


def unless_building(path: Path, action: Callable[[], None]) -> bool:
    """Run ``action`` holding :func:`build_lock` for ``path``, unless a build holds it now.

    Returns whether ``action`` ran: a build in progress is never waited for, nor touched.
    """
    try:
        with build_lock(path, timeout=0):
            action()
    except Timeout:
        return False
    return True


def write_export(out: Path, write: Callable[[Path], None], overwrite: bool = False, option: str = "out=") -> list[Path]:
    """Have ``write(tmp)`` build an export in a temporary folder, then move each entry it made into
    ``out``; returns the entries' paths in ``out``.

    Nothing of a user's is replaced: an entry whose name is taken in ``out`` is refused, in one
    line naming it and ``option``, before anything is moved; with ``overwrite`` an entry may
    replace only what an earlier export recorded in ``out/.liver-gan-export.json`` (a file the user
    put among its files is still refused).  One export at a time writes into ``out`` (a lock on
    the folder itself, so no lock file is left beside the user's files).
    """
    out = Path(out)
    with user_fixable_write_errors(out):
        return _write_export(out, write, overwrite, option)


def _write_export(out: Path, write: Callable[[Path], None], overwrite: bool, option: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    with _hold_folder(out, option):
        tmp = Path(tempfile.mkdtemp(prefix=".export.", suffix=TEMPORARY_SUFFIX, dir=out))
        try:
            write(tmp)
            names = sorted(entry.name for entry in tmp.iterdir() if not entry.name.endswith(LOCK_SUFFIX))
            ours = _exported_files(out)
            for name in names:
                _refuse_taken(out, name, ours, overwrite, option)
            for name in names:
                _remove_entry(out / name)
                os.replace(tmp / name, out / name)
            written = {str(path.relative_to(out)) for name in names for path in _files(out / name)}
            kept = {path for path in ours if path.split("/")[0] not in names}
            atomic_write_json(out / EXPORT_MANIFEST, {"files": sorted(kept | written)})
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return [out / name for name in names]


@contextlib.contextmanager
def _hold_folder(out: Path, option: str) -> Iterator[None]:
    descriptor = os.open(out, os.O_RDONLY)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LiverGanError(f"another liver-gan export is writing into {out}; wait for it or choose another {option}") from None
        yield
    finally:
        os.close(descriptor)


def _exported_files(out: Path) -> set[str]:
    """The files an earlier export recorded in ``out``'s manifest (none when it has no readable one)."""
    try:
        files = json.loads((out / EXPORT_MANIFEST).read_text()).get("files", [])
    except (OSError, ValueError, AttributeError):
        return set()
    return {path for path in files if isinstance(path, str)}


def _files(path: Path) -> list[Path]:
    if path.is_dir() and not path.is_symlink():
        return [item for item in path.rglob("*") if not item.is_dir() or item.is_symlink()]
    return [path]


def _refuse_taken(out: Path, name: str, ours: set[str], overwrite: bool, option: str) -> None:
    target = out / name
    if not (target.exists() or target.is_symlink()):
        return
    if not overwrite:
        raise LiverGanError(
            f"{target} exists already; choose another {option} or pass overwrite=true to replace an earlier "
            "liver-gan export there (nothing was overwritten)"
        )
    foreign = [path for path in _files(target) if str(path.relative_to(out)) not in ours]
    if foreign:
        raise LiverGanError(
            f"{foreign[0]} was not written by liver-gan (it is not in {out / EXPORT_MANIFEST}); "
            f"move it away or choose another {option} (nothing was overwritten)"
        )


def _remove_entry(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
