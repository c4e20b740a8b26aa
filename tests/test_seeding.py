"""Random state across a resume, and the deterministic mode's cuBLAS workspace (issue 17)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from typing import Iterator

import pytest
import torch

from liver_gan.training import seeding
from liver_gan.training.seeding import restore_rng_state, rng_state, seed_everything

CUDA = torch.device("cuda")


class FakeGPUs:
    """``n`` visible GPUs as torch.cuda sees them, their random states kept in a list."""

    def __init__(self, n: int, monkeypatch: pytest.MonkeyPatch) -> None:
        self.states = [torch.full((16,), index, dtype=torch.uint8) for index in range(n)]
        monkeypatch.setattr(torch.cuda, "device_count", lambda: len(self.states))
        monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [state.clone() for state in self.states])
        monkeypatch.setattr(torch.cuda, "set_rng_state", self.set_rng_state)
        monkeypatch.setattr(torch.cuda, "set_rng_state_all", self.set_rng_state_all)

    def set_rng_state(self, state: torch.Tensor, device: int = 0) -> None:
        if not 0 <= device < len(self.states):
            raise RuntimeError(f"CUDA error: invalid device ordinal {device}")
        self.states[device] = state.clone()

    def set_rng_state_all(self, states: list[torch.Tensor]) -> None:
        for index, state in enumerate(states):
            self.set_rng_state(state, index)


def saved_on_gpus(count: int, monkeypatch: pytest.MonkeyPatch) -> dict:
    """A checkpoint's random state as a run with ``count`` GPUs saved it (GPU i's state is all i)."""
    with monkeypatch.context() as patch:
        FakeGPUs(count, patch)
        return rng_state(CUDA)


def test_resume_with_fewer_gpus_restores_those_visible(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    state = saved_on_gpus(2, monkeypatch)
    gpus = FakeGPUs(1, monkeypatch)
    gpus.states[0].fill_(9)
    with caplog.at_level(logging.WARNING):
        restore_rng_state(state, CUDA)
    assert gpus.states[0].eq(0).all()  # GPU 0 continues GPU 0's stream
    assert "random state of 2 GPU(s) but 1 are visible" in caplog.text


def test_resume_with_more_gpus_keeps_the_new_ones_seeded(monkeypatch: pytest.MonkeyPatch) -> None:
    state = saved_on_gpus(1, monkeypatch)
    gpus = FakeGPUs(3, monkeypatch)
    restore_rng_state(state, CUDA)
    assert [int(gpu_state[0]) for gpu_state in gpus.states] == [0, 1, 2]


def test_resume_on_the_same_gpus_is_silent(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    state = saved_on_gpus(2, monkeypatch)
    gpus = FakeGPUs(2, monkeypatch)
    gpus.states = [torch.zeros(16, dtype=torch.uint8) + 7 for _ in range(2)]
    with caplog.at_level(logging.WARNING):
        restore_rng_state(state, CUDA)
    assert [int(gpu_state[0]) for gpu_state in gpus.states] == [0, 1]
    assert not caplog.records


def test_the_cli_entries_reserve_the_cublas_workspace_at_import() -> None:
    env = {name: value for name, value in os.environ.items() if name != "CUBLAS_WORKSPACE_CONFIG"}
    code = "import os, liver_gan.cli.train; print(os.environ.get('CUBLAS_WORKSPACE_CONFIG'))"
    printed = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert printed.strip() == ":4096:8"


@pytest.fixture
def global_determinism() -> Iterator[None]:
    """seed_everything switches torch's global determinism flags; put them back afterwards."""
    saved = torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark
    yield
    torch.use_deterministic_algorithms(saved[0])
    torch.backends.cudnn.benchmark = saved[1]


@pytest.mark.usefixtures("global_determinism")
def test_deterministic_mode_warns_when_cuda_started_before_the_workspace_was_set(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    with caplog.at_level(logging.WARNING):
        seed_everything(0, deterministic=True)
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    [record] = [record for record in caplog.records if record.name == seeding.__name__]
    assert "may not be deterministic" in record.getMessage()


@pytest.mark.usefixtures("global_determinism")
def test_deterministic_mode_is_silent_when_the_workspace_was_set_in_time(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    with caplog.at_level(logging.WARNING):
        seed_everything(0, deterministic=True)
    assert not [record for record in caplog.records if record.name == seeding.__name__]
