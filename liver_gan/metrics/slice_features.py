"""Inception features of single real slices, cached by what each slice is and how it was embedded.

A reference-statistics entry (liver_gan/metrics/reference.py) belongs to one exact set of reals: a
subset, another ``eval.max_real``, another pool or a crop-free mask variant of the same slices is a
new entry.  Its features, though, are the features of slices already seen, so they are looked up
here first and only the slices never embedded go through Inception.

A slice's key is the sha256 of its shape and 8-bit levels (exactly what Inception sees); the
preprocessing key is the weights' sha256, the device type and arithmetic of the pass
(:class:`~liver_gan.metrics.inception.FeatureExtractor`) and the fixed input pipeline
(:data:`~liver_gan.metrics.inception.FEATURE_PREPROCESSING`).  Under
``<eval.cache_dir>/slice_features/<preprocessing digest>/`` each Inception pass leaves one shard:
``hashes.npy``, ``features.npy`` and a ``key.json`` holding the sha256 of both arrays.  Shards are
made by :func:`liver_gan.atomic.build_once` (locked, atomic); a shard whose arrays do not match
their checksum is refused with a warning and its slices are embedded again, never read.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path

import numpy as np
from torch import Tensor

from liver_gan.atomic import build_once
from liver_gan.images import to_uint8
from liver_gan.metrics.inception import FEATURE_PREPROCESSING, FeatureExtractor

log = logging.getLogger(__name__)

STORE_DIR = "slice_features"
KEY_FILE = "key.json"
HASH_DTYPE = "S64"  # a hex sha256 per slice


@dataclasses.dataclass(frozen=True)
class PreprocessingKey:
    """What a slice's features depend on besides the slice itself."""

    weights_sha256: str
    device_type: str  # cpu, cuda, ...: kernels differ in rounding between devices
    precision: str  # FeatureExtractor.precision
    preprocessing: str  # FEATURE_PREPROCESSING

    def digest(self) -> str:
        fields = json.dumps(dataclasses.asdict(self), sort_keys=True)
        return hashlib.sha256(fields.encode()).hexdigest()[:32]


def preprocessing_key(extractor: FeatureExtractor) -> PreprocessingKey:
    return PreprocessingKey(extractor.weights_sha256, extractor.device.type, extractor.precision, FEATURE_PREPROCESSING)


def slice_hashes(pixels: Tensor) -> np.ndarray:
    """The sha256 (hex, as ``S64`` bytes) of each uint8 slice's shape and levels."""
    hashes = []
    for slice_pixels in pixels.numpy():
        digest = hashlib.sha256(repr(slice_pixels.shape).encode())
        digest.update(slice_pixels.tobytes())
        hashes.append(digest.hexdigest())
    return np.array(hashes, dtype=HASH_DTYPE)


def cached_slice_features(
    images: Tensor, extractor: FeatureExtractor, batch_size: int, cache_dir: Path, what: str
) -> np.ndarray:
    """float32 (N, 2048) features of (N, 1|3, H, W) images in [-1, 1]: the cached ones read, the
    others computed by ``extractor`` (its progress saying "Inception: M <what>") and stored."""
    pixels = to_uint8(images)
    hashes = slice_hashes(pixels)
    store = Path(cache_dir) / STORE_DIR / preprocessing_key(extractor).digest()
    known = read_store(store)
    missing = [index for index, digest in enumerate(hashes.tolist()) if digest not in known]
    if missing:
        first_of = {hashes[index]: index for index in reversed(missing)}  # the same slice twice is embedded once
        rows = sorted(first_of.values())
        computed = extractor.pixel_features(pixels[rows], batch_size, what)
        write_shard(store, hashes[rows], computed, preprocessing_key(extractor))
        known |= dict(zip(hashes[rows].tolist(), computed))
    log.info(
        "slice features: %d of %d real slices cached, %d embedded", len(hashes) - len(missing), len(hashes), len(missing)
    )
    if len(hashes) == 0:
        return np.empty((0, 2048), dtype=np.float32)
    return np.stack([known[digest] for digest in hashes.tolist()]).astype(np.float32, copy=False)


def read_store(store: Path) -> dict[bytes, np.ndarray]:
    """Every slice's features in the store's whole shards; damaged shards are refused with a warning."""
    known: dict[bytes, np.ndarray] = {}
    if not store.is_dir():
        return known
    for shard in sorted(path for path in store.iterdir() if path.is_dir() and not path.name.startswith(".")):
        arrays = read_shard(shard)
        if arrays is None:
            log.warning("slice features %s are damaged: not used; their slices are embedded again", shard)
            continue
        known |= dict(zip(arrays[0].tolist(), arrays[1]))
    return known


def read_shard(shard: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """The shard's hashes and features, or None when a file is missing, unreadable or not what its
    key.json's checksums say."""
    try:
        hashes = np.load(shard / "hashes.npy", allow_pickle=False)
        features = np.load(shard / "features.npy", allow_pickle=False)
        key = json.loads((shard / KEY_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(key, dict) or key.get("arrays_sha256") != arrays_sha256(hashes, features):
        return None
    return hashes, features


def is_shard(shard: Path) -> bool:
    return read_shard(shard) is not None


def arrays_sha256(hashes: np.ndarray, features: np.ndarray) -> str:
    digest = hashlib.sha256(repr((hashes.dtype.str, hashes.shape, features.dtype.str, features.shape)).encode())
    digest.update(np.ascontiguousarray(hashes).tobytes())
    digest.update(np.ascontiguousarray(features).tobytes())
    return digest.hexdigest()


def write_shard(store: Path, hashes: np.ndarray, features: np.ndarray, key: PreprocessingKey) -> None:
    """One shard of these slices, named by their hashes, made once however many jobs ask."""
    features = np.asarray(features, dtype=np.float32)
    name = hashlib.sha256(np.ascontiguousarray(hashes).tobytes()).hexdigest()[:32]

    def write(directory: Path) -> None:
        np.save(directory / "hashes.npy", hashes, allow_pickle=False)
        np.save(directory / "features.npy", features, allow_pickle=False)
        checksum = arrays_sha256(hashes, features)
        fields = {**dataclasses.asdict(key), "num_slices": len(hashes), "arrays_sha256": checksum}
        (directory / KEY_FILE).write_text(json.dumps(fields, indent=2) + "\n")

    build_once(store / name, write, is_complete=is_shard)
