"""The training device: resolving ``trainer.device``, what it can do, and reading a clock on it."""

from __future__ import annotations

import os
import time

import torch

from liver_gan.errors import LiverGanError


def resolve_device(name: str, option: str = "trainer.device") -> torch.device:
    """``auto`` gives cuda when available, else cpu; an unavailable cuda is a clear error naming ``option``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise LiverGanError(f"{option}={name!r} is not a device; use auto, cpu or cuda[:N]") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise LiverGanError(f"{option}={name!r} but CUDA is not available; use {option}=cpu or auto")
    return device


# The fixed cuBLAS workspace that reproducible matmuls need (CUDA's "Reproducibility" notes): 8
# buffers of 4 MiB, about what cuBLAS takes by default on recent GPUs, so setting it always costs nothing.
CUBLAS_WORKSPACE_CONFIG = ":4096:8"


def reserve_cublas_workspace() -> None:
    """Set ``CUBLAS_WORKSPACE_CONFIG`` (unless the user did) before anything can initialise cuBLAS.

    cuBLAS reads it once, when the process creates its first handle; set any later (by
    ``trainer.deterministic=true`` in the second job of an in-process multirun, say) it is ignored
    and "deterministic" silently is not.  Every CLI entry calls this at import.
    """
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE_CONFIG)


def check_bf16_supported(device: torch.device, option: str = "trainer.amp") -> None:
    """bf16 autocast needs native bf16 on ``device``: a GPU that only emulates it (before Ampere) is slower than fp32."""
    if device.type != "cuda":
        raise LiverGanError(f"{option}=true needs a CUDA device, but training runs on {device}; set {option}=false")
    with torch.cuda.device(device):  # is_bf16_supported asks about the current device
        try:
            native = torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:  # a torch without including_emulation: native bf16 starts with Ampere
            native = torch.cuda.get_device_capability(device)[0] >= 8
    if not native:
        raise LiverGanError(
            f"{option}=true but {torch.cuda.get_device_name(device)} has no native bf16 (only emulated, slower "
            f"than fp32); set {option}=false"
        )


def synchronize(device: torch.device) -> None:
    """Wait for the work queued on ``device``: a GPU runs kernels asynchronously, so a clock read
    without this measures the queueing, not the work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_clock(device: torch.device) -> float:
    """``time.perf_counter()`` once ``device`` has finished its queued work."""
    synchronize(device)
    return time.perf_counter()
