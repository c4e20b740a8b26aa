"""The built slice dataset on disk, under a key over everything that could change its contents.

An entry is ``<cache_dir>/<key>/`` holding compact ``.npy`` arrays (images as float16) and
``meta.json`` (per-patient counts, skipped patients, and the root and options behind the key).
It is built once by :func:`liver_gan.atomic.build_once`, so every later run, and every job of a
multirun, finds either nothing or a complete entry; a damaged entry is built again.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from liver_gan.atomic import build_once, mark_cache_entry
from liver_gan.errors import LiverGanError

log = logging.getLogger(__name__)

# Bump whenever reading or slicing changes what an entry holds: old entries are then ignored.
CACHE_FORMAT_VERSION = 3
META_FILE = "meta.json"
ARRAYS = ("images", "labels", "patient_ids", "slice_indices", "spacing")
OPTIONAL_ARRAYS = ("label_maps",)  # only in entries built with dataset.masks=true


@dataclass(frozen=True)
class SliceTable:
    """Every kept slice of every patient, in patient then slice order."""

    images: np.ndarray  # float16 (N, R, R) in [-1, 1]
    labels: np.ndarray  # int8 (N,), HEALTHY / TUMOR
    patient_ids: np.ndarray  # int32 (N,)
    slice_indices: np.ndarray  # int32 (N,)
    spacing: np.ndarray  # float32 (N, 3): mm per pixel (rows, columns), slice thickness
    label_maps: np.ndarray | None = None  # int8 (N, R, R), 0/1/2, with dataset.masks=true


@dataclass(frozen=True)
class CacheEntry:
    key: str
    path: Path
    slices: SliceTable
    meta: dict[str, Any]


def cache_key(options: Mapping[str, Any], root: Path, files: Iterable[Path]) -> str:
    """sha256 over the preprocessing options and each input file's name, size and mtime.

    A file counts by its name below ``root`` (which gives the patient id) and by the resolved
    path it is read from, so two roots holding equal names, sizes and times never share an entry,
    nor does a symlinked folder that now points elsewhere.
    """
    inputs = []
    for path in map(Path, files):
        stat = path.stat()
        inputs.append([path.relative_to(root).as_posix(), str(path.resolve()), stat.st_size, stat.st_mtime_ns])
    payload = {"format_version": CACHE_FORMAT_VERSION, "options": dict(options), "inputs": inputs}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def load_or_build(
    cache_dir: Path, key: str, build: Callable[[], tuple[SliceTable, dict[str, Any]]]
) -> CacheEntry:
    """The entry for ``key``: read back if present, else built once by ``build``.

    A concurrent job building the same key is waited for, and its entry is then reused.
    """
    path = Path(cache_dir) / key

    def write_entry(directory: Path) -> None:
        mark_cache_entry(directory)
        log.info("dataset cache miss: building %s", path)
        slices, meta = build()
        _write(directory, slices, {"key": key, "format_version": CACHE_FORMAT_VERSION, **meta})

    if not build_once(path, write_entry, is_complete=is_entry):
        log.info("dataset cache hit: %s", path)
    slices, meta = _read(path)
    return CacheEntry(key=key, path=path, slices=slices, meta=meta)


def is_entry(path: Path) -> bool:
    """Whether ``path`` holds a whole entry: every array's header matches its file's length
    (checked without reading the data) and ``meta.json`` parses."""
    try:
        optional = [name for name in OPTIONAL_ARRAYS if (path / f"{name}.npy").is_file()]
        lengths = {len(np.load(path / f"{name}.npy", mmap_mode="r")) for name in (*ARRAYS, *optional)}
        meta = json.loads((path / META_FILE).read_text())
    except (OSError, ValueError):
        return False
    return len(lengths) == 1 and isinstance(meta, dict)


def entry_options(path: Path) -> dict[str, Any]:
    """What the entry at ``path`` was built from (its root and preprocessing options)."""
    meta = json.loads((Path(path) / META_FILE).read_text())
    return {"root": meta.get("root"), **meta.get("options", {})}


def _write(directory: Path, slices: SliceTable, meta: dict[str, Any]) -> None:
    for name in (*ARRAYS, *OPTIONAL_ARRAYS):
        if getattr(slices, name) is not None:
            np.save(directory / f"{name}.npy", getattr(slices, name), allow_pickle=False)
    (directory / META_FILE).write_text(json.dumps(meta, indent=2) + "\n")


def _read(path: Path) -> tuple[SliceTable, dict[str, Any]]:
    try:
        optional = [name for name in OPTIONAL_ARRAYS if (path / f"{name}.npy").is_file()]
        slices = SliceTable(**{name: np.load(path / f"{name}.npy", allow_pickle=False) for name in (*ARRAYS, *optional)})
        meta = json.loads((path / META_FILE).read_text())
    except (OSError, ValueError) as error:
        raise LiverGanError(
            f"dataset cache entry {path} is damaged ({error}); delete that folder to rebuild it"
        ) from error
    return slices, meta
