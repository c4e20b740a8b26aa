"""The two caches as a user sees them: what each entry holds, how big and how old it is, and
pruning them without ever touching an entry that is being built.

An entry's folder is the dataset cache's ``<dataset.cache_dir>/<key>/`` or the reference
statistics' ``<eval.cache_dir>/<digest>/``. Its age is counted from its last use: every run that
reuses an entry sets the folder's modification time (:func:`liver_gan.atomic.build_once`).
Temporaries left by killed builds are listed too, and pruned like entries.  Only folders the
cache can prove are its own are listed (a whole entry, or one holding the marker every build
writes first, :func:`liver_gan.atomic.mark_cache_entry`): an export or a phantom that happens
to sit in a cache folder, with or without a ``.lock`` beside it, is never pruned.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from liver_gan.atomic import (
    is_marked_cache_entry,
    remove_directory,
    remove_stale_temporaries,
    temporary_of,
    unless_building,
)
from liver_gan.data import cache as dataset_cache
from liver_gan.errors import LiverGanError
from liver_gan.metrics import reference as reference_cache

DAY_SECONDS = 86400.0


@dataclass(frozen=True)
class CacheKind:
    name: str
    is_entry: Callable[[Path], bool]
    options: Callable[[Path], dict[str, Any]]


DATASET = CacheKind("dataset", dataset_cache.is_entry, dataset_cache.entry_options)
REFERENCE = CacheKind("reference", reference_cache.is_entry, reference_cache.entry_options)


@dataclass(frozen=True)
class Listing:
    """One folder in a cache directory."""

    kind: str  # "dataset" or "reference"
    key: str  # the entry's folder name; for a temporary, that of the entry it was to become
    path: Path
    state: str  # "ok", "damaged", "building" (a live temporary) or "stale" (a killed build's)
    size_bytes: int
    last_used: float  # seconds since the epoch
    options: dict[str, Any]

    def age_days(self, now: float) -> float:
        return (now - self.last_used) / DAY_SECONDS


def list_cache(directory: Path, kind: CacheKind) -> list[Listing]:
    """Every entry and temporary under ``directory``, oldest first; other folders are skipped
    (the reference statistics' default folder sits inside the dataset cache's)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    listings = [_describe(item, kind) for item in directory.iterdir() if item.is_dir()]
    return sorted((listing for listing in listings if listing is not None), key=lambda item: item.last_used)


def _describe(folder: Path, kind: CacheKind) -> Listing | None:
    owner = temporary_of(folder)
    if owner is not None:  # named by mkdtemp after the entry it was to become
        state = "stale" if unless_building(owner, lambda: None) else "building"
        return _listing(kind, owner.name, folder, state, {})
    if owner is None and kind.is_entry(folder):
        return _listing(kind, folder.name, folder, "ok", kind.options(folder))
    if owner is None and is_marked_cache_entry(folder):  # made by a build, now unreadable
        return _listing(kind, folder.name, folder, "damaged", {})
    return None


def _listing(kind: CacheKind, key: str, folder: Path, state: str, options: dict[str, Any]) -> Listing:
    size = sum(file.stat().st_size for file in folder.rglob("*") if file.is_file())
    return Listing(kind.name, key, folder, state, size, folder.stat().st_mtime, options)


def select(
    listings: list[Listing], keys: list[str], older_than_days: float | None, everything: bool, now: float
) -> list[Listing]:
    """The listings to prune: all of them, those unused for ``older_than_days``, or those whose
    key starts with one of ``keys`` (a key prefix that matches nothing is an error)."""
    if everything:
        return list(listings)
    if older_than_days is not None:
        return [listing for listing in listings if listing.age_days(now) > older_than_days]
    chosen = []
    for key in keys:
        matches = [listing for listing in listings if listing.key.startswith(key)]
        if not matches:
            raise LiverGanError(f"no cache entry starts with {key!r}: run liver-gan-cache list to see the keys")
        chosen += [listing for listing in matches if listing not in chosen]
    return chosen


def prune(listing: Listing) -> bool:
    """Delete one entry (with its stale temporaries) or one stale temporary, holding the lock of
    the entry it belongs to. Returns False, touching nothing, while that entry is being built."""
    if listing.state in ("stale", "building"):
        owner = temporary_of(listing.path)
        return unless_building(owner, lambda: remove_stale_temporaries(owner))

    def remove() -> None:
        remove_stale_temporaries(listing.path)
        remove_directory(listing.path)

    return unless_building(listing.path, remove)


def format_listing(listing: Listing, now: float) -> str:
    options = " ".join(f"{name}={_short(value)}" for name, value in listing.options.items())
    return (
        f"{listing.kind:<9} {listing.key[:12]:<12} {listing.state:<8} {_size(listing.size_bytes):>9} "
        f"{_age(now - listing.last_used):>8}  {options}"
    )


HEADER = f"{'KIND':<9} {'KEY':<12} {'STATE':<8} {'SIZE':>9} {'UNUSED':>8}  BUILT FROM"


def _short(value: Any) -> str:
    """Hashes are long: their first 12 hex digits name them well enough in a table."""
    text = str(value)
    is_hash = len(text) >= 32 and all(character in "0123456789abcdef" for character in text)
    return text[:12] if is_hash else text


def _size(size_bytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size_bytes < 1024:
            return f"{size_bytes:.1f} {unit}"
        size_bytes /= 1024
    return f"{size_bytes:.1f} TiB"


def _age(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < DAY_SECONDS:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / DAY_SECONDS:.0f} d"
