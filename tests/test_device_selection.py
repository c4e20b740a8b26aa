"""What depends on ``trainer.device``, checked without a GPU (issue 23): a CPU run (training, the
evaluation, the samplers) makes no CUDA call, and the choices that differ between the CPU, one GPU
and several GPUs (bf16 autocast without a GradScaler, cuDNN's autotuner, the process group's
backend, each rank's GPU) are right for each.  The GPU itself is exercised by benchmarks/gpu_check.sh.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import pytest
import torch
import torch.distributed as dist
from omegaconf import DictConfig
from tiny_gan import tiny_ddpm_overrides

from liver_gan.device import cudnn_benchmark, process_group_backend, rank_gpu_index, training_autocast
from liver_gan.errors import LiverGanError
from liver_gan.runs import load_generator
from liver_gan.sampling import generate
from liver_gan import distributed
from liver_gan.distributed import World, rank_device, start_world
from liver_gan.training.loop import train
from liver_gan.training.seeding import seed_everything

Compose = Callable[..., DictConfig]
CPU, CUDA = torch.device("cpu"), torch.device("cuda")
# Every torch.cuda entry point that would touch a GPU (``_lazy_init`` is where every CUDA
# initialisation starts); torch.manual_seed's queued seeding of CUDA generators needs none of them.
CUDA_CALLS = (
    "_lazy_init",
    "init",
    "synchronize",
    "current_device",
    "device_count",
    "set_device",
    "get_device_name",
    "get_device_capability",
    "get_rng_state",
    "get_rng_state_all",
    "set_rng_state",
    "set_rng_state_all",
    "max_memory_allocated",
    "memory_allocated",
    "reset_peak_memory_stats",
    "empty_cache",
    "is_bf16_supported",
)
TINY_TRAINER = [
    "trainer.device=cpu",
    "trainer.batch_size=8",
    "trainer.max_steps=3",
    "trainer.num_fixed_samples=4",
    "trainer.ema_kimg=1",
]
SMALL_EVAL = [
    "eval.enabled=true",
    "eval.metrics=[fid,kid,memorisation]",
    "eval.num_samples=8",
    "eval.max_real=8",
    "eval.kid.num_subsets=2",
    "eval.kid.subset_size=4",
]


@pytest.fixture
def no_cuda(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """A machine without CUDA on which any CUDA call is recorded and fails; returns the calls made."""
    calls: list[str] = []

    def refuse(name: str) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            raise AssertionError(f"torch.cuda.{name} was called on a CPU run")

        return call

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for name in CUDA_CALLS:
        monkeypatch.setattr(torch.cuda, name, refuse(name))
    return calls


@pytest.mark.slow
@pytest.mark.parametrize("model", ["mlp", "ddpm"])
def test_a_cpu_run_trains_evaluates_and_samples_without_a_cuda_call(
    model: str, no_cuda: list[str], compose_config: Compose, tiny_phantom: list[str], data_dir: Path,
    fid_weights: Path, tmp_path: Path,
) -> None:
    phantom = tiny_phantom if model == "mlp" else [*tiny_ddpm_overrides(data_dir), *tiny_phantom[-1:]]
    cfg = compose_config([*phantom, *TINY_TRAINER, *SMALL_EVAL], hydra=False)
    metrics = train(cfg, tmp_path / "run")
    generator, _ = load_generator(tmp_path / "run", "cpu")
    samples = generate(generator, 3, "cpu", seed=0)
    assert metrics["status"] == "completed" and metrics["steps"] == 3
    assert {"fid", "kid_mean"} <= set(metrics)
    assert samples.device == CPU and samples.shape[0] == 3
    assert all(p.device == CPU for p in generator.parameters())
    assert no_cuda == []


def test_the_cuda_guard_catches_a_cuda_call(no_cuda: list[str]) -> None:
    """The guard above can fail: a CUDA call under it is recorded and raises."""
    with pytest.raises(AssertionError, match="synchronize was called"):
        torch.cuda.synchronize()
    assert no_cuda == ["synchronize"]


def test_amp_off_is_fp32_autocast_disabled() -> None:
    autocast = training_autocast(CPU, amp=False)
    assert (autocast.device, autocast._enabled) == ("cpu", False)


def test_amp_on_a_gpu_is_bf16_autocast(monkeypatch: pytest.MonkeyPatch) -> None:
    # torch.autocast disables itself on a machine without CUDA; here it sees a GPU with native bf16.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    autocast = training_autocast(CUDA, amp=True)
    assert (autocast.device, autocast.fast_dtype, autocast._enabled) == ("cuda", torch.bfloat16, True)


def test_bf16_needs_no_grad_scaler() -> None:
    """bf16 has float32's exponent range: a gradient that float16 flushes to zero survives, which is
    why the loop runs no GradScaler."""
    tiny = torch.tensor(1e-30)
    assert tiny.to(torch.float16).item() == 0.0
    assert tiny.to(torch.bfloat16).item() > 0.0


@pytest.mark.parametrize(("deterministic", "benchmark"), [(False, True), (True, False)])
def test_cudnn_autotunes_only_outside_deterministic_mode(deterministic: bool, benchmark: bool) -> None:
    saved = torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark
    try:
        seed_everything(0, deterministic)
        assert cudnn_benchmark(deterministic) is benchmark
        assert torch.backends.cudnn.benchmark is benchmark
    finally:
        torch.use_deterministic_algorithms(saved[0])
        torch.backends.cudnn.benchmark = saved[1]


@pytest.mark.parametrize(("cuda_available", "backend"), [(False, "gloo"), (True, "cpu:gloo,cuda:nccl")])
def test_the_process_group_backend(
    cuda_available: bool, backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[str] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda_available)
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda backend, timeout: started.append(backend))
    monkeypatch.setattr(os, "environ", {**os.environ, "WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"})
    world = start_world()
    assert process_group_backend(cuda_available) == backend
    assert started == [backend]
    assert (world.rank, world.size) == (1, 2)


def test_one_process_starts_no_process_group(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dist, "init_process_group", lambda *args, **kwargs: pytest.fail("a process group was started"))
    monkeypatch.setattr(os, "environ", {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK")})
    assert not start_world().distributed


@pytest.mark.parametrize(("local_rank", "gpus", "index"), [(0, 4, 0), (3, 4, 3), (5, 4, 1), (1, 1, 0)])
def test_each_rank_trains_on_the_gpu_of_its_local_rank(
    local_rank: int, gpus: int, index: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    chosen: list[int] = []
    monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    device = rank_device(CUDA, World(rank=8 + local_rank, local_rank=local_rank, size=16))
    assert rank_gpu_index(local_rank, gpus) == index
    assert device == torch.device("cuda", index) and chosen == [index]


def test_a_single_process_and_the_cpu_keep_their_device(no_cuda: list[str]) -> None:
    assert rank_device(CUDA, distributed.SINGLE_PROCESS) == CUDA
    assert rank_device(CPU, World(rank=1, local_rank=1, size=2)) == CPU
    assert no_cuda == []


def test_ranks_on_gpus_without_a_visible_gpu_are_refused() -> None:
    with pytest.raises(LiverGanError, match="no GPU is visible"):
        rank_gpu_index(0, 0)
