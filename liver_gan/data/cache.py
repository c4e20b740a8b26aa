"""The built slice dataset on disk, under a key over everything that could change its contents.

An entry is ``<cache_dir>/<key>/`` holding compact ``.npy`` arrays (images as float16) and
``meta.json`` (per-patient counts, skipped patients, the options and input files behind the
key). It is built under a file lock into a temporary directory that is renamed into place, so
every later run, and every job of a multirun, finds either nothing or a complete entry.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Mapping, Tuple

import numpy as np

from liver_gan.atomic import atomic_directory, build_lock
from liver_gan.errors import LiverGanError

logger = logging.getLogger(__name__)

# Bump whenever reading or slicing changes what an entry holds: old entries are then ignored.
CACHE_FORMAT_VERSION = 1
META_FILE = "meta.json"
ARRAYS = ("images", "labels", "patient_ids", "slice_indices")


@dataclass(frozen=True)
class SliceTable:
    """Every kept slice of every patient, in patient then slice order."""

    images: np.ndarray  # float16 (N, R, R) in [-1, 1]
    labels: np.ndarray  # int8 (N,), HEALTHY / TUMOR
    patient_ids: np.ndarray  # int32 (N,)
    slice_indices: np.ndarray  # int32 (N,)


@dataclass(frozen=True)
class CacheEntry:
    key: str
    path: Path
    slices: SliceTable
    meta: Dict[str, Any]


def cache_key(options: Mapping[str, Any], root: Path, files: Iterable[Path]) -> str:
    """sha256 over the preprocessing options and each input file's name, size and mtime."""
    inputs = []
    for path in files:
        stat = Path(path).stat()
        inputs.append([Path(path).relative_to(root).as_posix(), stat.st_size, stat.st_mtime_ns])
    payload = {"format_version": CACHE_FORMAT_VERSION, "options": dict(options), "inputs": inputs}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def load_or_build(cache_dir: Path, key: str, build: Callable[[], Tuple[SliceTable, Dict[str, Any]]]) -> CacheEntry:
    """The entry for ``key``: read back if present, else built once by ``build`` under a lock.

    A concurrent job building the same key is waited for, and its entry is then reused.
    """
    path = Path(cache_dir) / key
    with build_lock(path):
        if (path / META_FILE).is_file():
            logger.info("dataset cache hit: %s", path)
        else:
            logger.info("dataset cache miss: building %s", path)
            slices, meta = build()
            with atomic_directory(path) as tmp:
                _write(tmp, slices, {"key": key, "format_version": CACHE_FORMAT_VERSION, **meta})
    slices, meta = _read(path)
    return CacheEntry(key=key, path=path, slices=slices, meta=meta)


def _write(directory: Path, slices: SliceTable, meta: Dict[str, Any]) -> None:
    for name in ARRAYS:
        np.save(directory / f"{name}.npy", getattr(slices, name), allow_pickle=False)
    (directory / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")


def _read(path: Path) -> Tuple[SliceTable, Dict[str, Any]]:
    try:
        slices = SliceTable(**{name: np.load(path / f"{name}.npy", allow_pickle=False) for name in ARRAYS})
        meta = json.loads((path / META_FILE).read_text())
    except (OSError, ValueError) as error:
        raise LiverGanError(
            f"dataset cache entry {path} is damaged ({error}); delete that folder to rebuild it"
        ) from error
    return slices, meta
