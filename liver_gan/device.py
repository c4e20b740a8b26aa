"""The training device: resolving ``trainer.device``, what it can do, the choices that depend on it
(autocast, cuDNN's autotuner, the process group's backend, each rank's GPU), and reading a clock on it.

The choices are small pure functions of the device and the options, so that their CPU, GPU and
multi-GPU answers are tested on a machine without a GPU (tests/test_device_selection.py).
"""

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


def training_autocast(device: torch.device, amp: bool) -> torch.autocast:
    """bf16 autocast on ``device`` when ``trainer.amp`` is on, else a disabled one (fp32 throughout).

    No GradScaler goes with it: bf16 keeps float32's exponent range, so small gradients do not
    underflow as float16's do, and loss scaling would only add a pass over the gradients.
    """
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp)


def cudnn_benchmark(deterministic: bool) -> bool:
    """Whether cuDNN may autotune its convolutions: the fastest kernel per shape, but the choice can
    differ between runs, so never under ``trainer.deterministic``."""
    return not deterministic


def process_group_backend(cuda_available: bool) -> str:
    """torch.distributed's backend: gloo for CPU tensors (the ranks' flags and objects are CPU
    tensors even on GPUs), and NCCL for CUDA tensors where CUDA is available."""
    return "cpu:gloo,cuda:nccl" if cuda_available else "gloo"


def rank_gpu_index(local_rank: int, device_count: int) -> int:
    """The GPU a rank trains on: its local rank among the ``device_count`` visible GPUs."""
    if device_count < 1:
        raise LiverGanError("trainer.device=cuda on several ranks but no GPU is visible; use trainer.device=cpu")
    return local_rank % device_count
