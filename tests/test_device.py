"""The training device: bf16 only where it is native, and clocks read after the device's queued work (issue 17)."""

from __future__ import annotations

import contextlib

import pytest
import torch

from liver_gan import device as device_module
from liver_gan.device import check_bf16_supported, device_clock
from liver_gan.errors import LiverGanError

CUDA = torch.device("cuda")


def fake_gpu(monkeypatch: pytest.MonkeyPatch, native_bf16: bool) -> None:
    """A GPU that emulates bf16 (native_bf16=False, e.g. a V100) or has it natively, as torch.cuda reports it."""
    monkeypatch.setattr(torch.cuda, "device", lambda device: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Fake GPU")
    monkeypatch.setattr(
        torch.cuda, "is_bf16_supported", lambda including_emulation=True: native_bf16 or including_emulation
    )


def test_amp_on_a_gpu_that_only_emulates_bf16_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_gpu(monkeypatch, native_bf16=False)
    with pytest.raises(LiverGanError, match="trainer.amp=true but Fake GPU has no native bf16"):
        check_bf16_supported(CUDA)


def test_amp_on_a_gpu_with_native_bf16_is_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_gpu(monkeypatch, native_bf16=True)
    check_bf16_supported(CUDA)


def test_amp_on_the_cpu_is_refused() -> None:
    with pytest.raises(LiverGanError, match="needs a CUDA device"):
        check_bf16_supported(torch.device("cpu"))


def test_the_clock_is_read_after_the_gpu_has_finished(monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[str] = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: events.append("synchronize"))
    monkeypatch.setattr(device_module.time, "perf_counter", lambda: events.append("clock") or 1.0)
    assert device_clock(CUDA) == 1.0
    assert events == ["synchronize", "clock"]
