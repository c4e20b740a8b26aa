"""Resolve ``trainer.device`` to a torch device."""

from __future__ import annotations

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
