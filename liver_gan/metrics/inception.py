"""pytorch-fid's InceptionV3 (pool3, 2048-d) as a feature extractor, with offline weights.

Weights come from ``eval.inception_weights=PATH``, else from the torch hub cache
(``$TORCH_HOME/hub/checkpoints/pt_inception-2015-12-05-6726825d.pth``), else from pytorch-fid's
normal download into that cache.  The model is always pytorch-fid's own, so the features are
the ones its CLI computes.

The network runs in full float32 on every device: TF32 (which cuDNN allows by default for
convolutions), oneDNN's bf16 matmuls and autocast are off while features are computed, so that
FID does not depend on a training script's speed settings.

Speed without changing the number: each BatchNorm is folded into the convolution before it (one
pass over the activations instead of two), and the network and its inputs are laid out
channels-last, the layout oneDNN's (and cuDNN's) convolutions run fastest in, under
``torch.inference_mode``.  On two CPU cores this runs about 1.6 times as fast as pytorch-fid's own
model, with features equal to float32 rounding and the FID within 0.1% of ``python -m pytorch_fid``
on the same PNGs (benchmarks/fid.py measures both; tests/test_fid.py checks the agreement).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import pickle
from pathlib import Path
from typing import Iterator
from unittest import mock

import numpy as np
import pytorch_fid.inception
import torch
from pytorch_fid.inception import FID_WEIGHTS_URL, InceptionV3
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torchvision.models.inception import BasicConv2d

from liver_gan.errors import LiverGanError
from liver_gan.images import to_uint8
from liver_gan.progress import PhaseProgress

log = logging.getLogger(__name__)

FID_WEIGHTS_NAME = os.path.basename(FID_WEIGHTS_URL)
POOL3_BLOCK = InceptionV3.BLOCK_INDEX_BY_DIM[2048]
# The arithmetic features are computed in; part of the reference-statistics cache key.
FEATURE_PRECISION = "float32, BatchNorm folded, channels-last"
# What an image goes through before the network, as pytorch-fid's CLI does it (see pixel_features);
# part of the per-slice feature cache's key (liver_gan/metrics/slice_features.py).
FEATURE_PREPROCESSING = (
    "8-bit levels / 255, gray repeated to RGB, pytorch-fid's bilinear resize to 299 and [-1, 1] scaling"
)


class FIDWeightsUnavailable(LiverGanError):
    """The Inception weights are neither configured, cached nor downloadable."""


def hub_weights_path() -> Path:
    """Where pytorch-fid's download puts (and looks for) the weights: the torch hub cache."""
    return Path(torch.hub.get_dir()) / "checkpoints" / FID_WEIGHTS_NAME


def weights_sha256(path: Path) -> str:
    """The file's sha256, hashed once per (path, size, mtime) in this process."""
    path = Path(path).resolve()
    stat = path.stat()
    return _file_sha256(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=None)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


class FeatureExtractor:
    """Batched pool3 features of images, computed as pytorch-fid's CLI would from PNG files."""

    def __init__(self, model: nn.Module, weights_name: str, weights_sha256: str, device: torch.device | str) -> None:
        self.model = for_inference(model).to(device)
        self.weights_name = weights_name
        self.weights_sha256 = weights_sha256
        self.device = torch.device(device)
        self.precision = FEATURE_PRECISION

    def features(self, images: Tensor, batch_size: int, what: str = "images") -> np.ndarray:
        """float32 (N, 2048) features of (N, 1|3, H, W) images in [-1, 1], quantised like a PNG."""
        return self.pixel_features(to_uint8(images), batch_size, what)

    def pixel_features(self, pixels: Tensor, batch_size: int, what: str = "images") -> np.ndarray:
        """float32 (N, 2048) features of uint8 (N, 1|3, H, W) pixels; the progress says
        "Inception: N <what>", e.g. "Inception: 2048 generated slices".

        Pixels become [0, 1] floats and grayscale is repeated to RGB, exactly as PIL's
        ``convert("RGB")`` and ``ToTensor`` do in pytorch-fid's CLI; the model resizes to 299 itself.
        """
        if pixels.ndim != 4 or pixels.shape[1] not in (1, 3):
            raise LiverGanError(f"Inception needs (N, 1 or 3, H, W) images, got shape {tuple(pixels.shape)}")
        if batch_size < 1:
            raise LiverGanError(f"eval.batch_size={batch_size} must be at least 1")
        batches = []
        with PhaseProgress(f"Inception: {len(pixels)} {what}", len(pixels), "images") as shown:
            with torch.inference_mode(), full_float32(self.device):
                for start in range(0, len(pixels), batch_size):
                    batches.append(self._batch_features(pixels[start : start + batch_size]))
                    shown.update(len(batches[-1]))
        return np.concatenate(batches) if batches else np.empty((0, 2048), dtype=np.float32)

    def _batch_features(self, pixels: Tensor) -> np.ndarray:
        batch = pixels.to(self.device).float().div(255).expand(-1, 3, -1, -1)
        return self.model(batch.contiguous(memory_format=torch.channels_last))[0].flatten(1).cpu().numpy()


def for_inference(model: nn.Module) -> nn.Module:
    """``model`` in eval mode with every conv + BatchNorm pair of pytorch-fid's network
    (torchvision's ``BasicConv2d``) folded into one convolution, laid out channels-last."""
    model.eval()
    for block in model.modules():
        if isinstance(block, BasicConv2d):
            block.conv = fuse_conv_bn_eval(block.conv, block.bn)
            block.bn = nn.Identity()
    return model.to(memory_format=torch.channels_last)


@contextlib.contextmanager
def full_float32(device: torch.device) -> Iterator[None]:
    """float32 matmuls and convolutions in IEEE precision (no TF32, no oneDNN bf16) and no autocast,
    on every device; the caller's settings are restored after."""
    ieee_float32 = _ieee_per_backend if hasattr(torch.backends, "fp32_precision") else _tf32_flags_off
    with ieee_float32(), torch.autocast(device.type, enabled=False):
        yield


@contextlib.contextmanager
def _ieee_per_backend() -> Iterator[None]:
    """PyTorch >= 2.9: each backend's float32 precision, of which the legacy TF32 flags are views,
    set to IEEE and restored exactly (setting the legacy flags would mix the two APIs, an error)."""
    backends = (
        torch.backends.cuda.matmul, torch.backends.cudnn.conv, torch.backends.mkldnn.matmul, torch.backends.mkldnn.conv
    )
    saved = [backend.fp32_precision for backend in backends]
    for backend in backends:
        backend.fp32_precision = "ieee"
    try:
        yield
    finally:
        for backend, precision in zip(backends, saved):
            backend.fp32_precision = precision


@contextlib.contextmanager
def _tf32_flags_off() -> Iterator[None]:
    """Older PyTorch: the cuBLAS and cuDNN TF32 flags off and the matmul precision at highest; the
    precision is restored first, because setting it rewrites the cuBLAS flag."""
    matmul_precision = torch.get_float32_matmul_precision()
    cublas_tf32, cudnn_tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.set_float32_matmul_precision("highest")
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(matmul_precision)
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = cublas_tf32, cudnn_tf32


def load_feature_extractor(weights: str | None, device: torch.device | str) -> FeatureExtractor:
    """pytorch-fid's ``InceptionV3`` (pool3) on ``device``, with weights resolved as the module says."""
    path = weights_path(weights)
    return FeatureExtractor(load_inception(weights), path.name, weights_sha256(path), torch.device(device))


def weights_path(weights: str | None) -> Path:
    """``eval.inception_weights`` if given, else where pytorch-fid keeps (or downloads) the file."""
    return _configured_weights(weights) if weights else hub_weights_path()


def load_inception(weights: str | None) -> nn.Module:
    """pytorch-fid's own ``InceptionV3`` (pool3) on the CPU, unchanged: what its CLI runs."""
    path = weights_path(weights)
    return _inception_from_file(path) if path.is_file() else _downloaded_inception()


def check_weights_available(weights: str | None) -> None:
    """Before a long run: a missing ``eval.inception_weights`` file fails now, and weights that
    pytorch-fid will have to download at the end of the run get a warning saying where to put them offline."""
    if weights:
        _configured_weights(weights)
    elif not hub_weights_path().is_file():
        log.warning(
            "%s is not at %s: pytorch-fid will download it when the run evaluates; offline, put it there "
            "or pass eval.inception_weights=PATH",
            FID_WEIGHTS_NAME,
            hub_weights_path(),
        )


def _configured_weights(weights: str) -> Path:
    path = Path(weights).expanduser()
    if not path.is_file():
        raise LiverGanError(f"eval.inception_weights={weights}: no such file; give the path to {FID_WEIGHTS_NAME}")
    return path


def _inception_from_file(path: Path) -> nn.Module:
    """Build pytorch-fid's model, pointing its weight loader at ``path`` instead of the URL."""

    def load_file(*args: object, **kwargs: object) -> dict:
        return torch.load(path, map_location="cpu", weights_only=True)

    try:
        with mock.patch.object(pytorch_fid.inception, "load_state_dict_from_url", load_file):
            return InceptionV3([POOL3_BLOCK])
    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError) as error:
        reason = _one_line(error)
        raise LiverGanError(
            f"{path}: not pytorch-fid's Inception weights ({reason}); replace it with {FID_WEIGHTS_NAME}"
        ) from error


def _downloaded_inception() -> nn.Module:
    """pytorch-fid's normal path: download into the hub cache, or say where the file belongs."""
    try:
        return InceptionV3([POOL3_BLOCK])
    except OSError as error:  # URLError, HTTPError, timeouts and refused connections are OSErrors
        reason = _one_line(getattr(error, "reason", error))
        raise FIDWeightsUnavailable(
            f"FID Inception weights could not be downloaded ({reason}); "
            f"put {FID_WEIGHTS_NAME} at {hub_weights_path()} or pass eval.inception_weights=PATH"
        ) from error


def _one_line(reason: object) -> str:
    return " ".join(str(reason).split())[:200]
