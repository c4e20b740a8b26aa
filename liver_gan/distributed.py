"""One training run on several processes (GPUs or nodes) through torch.distributed.

Launch: ``torchrun --nproc_per_node=N $(which liver-gan-train) ...`` on one machine; on SLURM, the
submitit launcher with ``hydra.launcher.tasks_per_node=N`` (its ``TorchDistributedEnvironment``
turns SLURM's task variables into torch.distributed's, so no torchrun runs inside SLURM).  Each
process (rank) trains on its own device: NCCL joins the GPUs, gloo the CPUs.

Data parallelism as stylegan2-ada's training loop does it: the networks start equal on every rank
(broadcast from rank 0), each rank trains on its shard of the global batch (``trainer.batch_size``
stays the global batch), and before every optimizer step the gradients of that optimizer's
parameters are averaged over the ranks, so the weights stay equal.  torch's
``DistributedDataParallel`` wrapper is not used: its reducer expects one backward per forward,
while a GAN step calls D in both the D and the G step (D frozen in the second) and R1 and WGAN-GP
take a double backward through D.  For the same reason BatchNorm stays per rank rather than
SyncBatchNorm (which has no double backward): each rank normalises its shard by the shard's
statistics, and the running statistics are made rank 0's on every rank before each grid,
checkpoint and evaluation.

A step's per-sample noise (latent vectors; a diffusion step's timesteps, noise and dropped labels)
is drawn for the whole global batch from the step's own stream and each rank keeps its shard's rows
(``training/batch_noise.py``): the ranks' samples get different noise, and N ranks draw exactly what one
process draws, so in deterministic mode they train the same weights.  The other draws
(augmentation, WGAN-GP's interpolation) come from each rank's own stream, seeded from ``seed`` and
the rank; rank 0's is the stream a single-process run would draw.  Only rank 0 writes the run dir:
logs, grids, TensorBoard events, checkpoints and metrics.json.
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from liver_gan.device import process_group_backend, rank_gpu_index

log = logging.getLogger(__name__)

# How long a rank waits for the others at a collective before failing (the default is 30 min):
# long enough for rank 0's evaluation and checkpoint writes, short enough that a dead rank ends the run.
COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=20)


@dataclass(frozen=True)
class World:
    """This process's place among the processes of one run."""

    rank: int = 0
    local_rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes the run dir."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


SINGLE_PROCESS = World()


def launched_world() -> World:
    """The ranks torchrun (its environment variables) or a SLURM job of several tasks (submitit) started."""
    if "WORLD_SIZE" not in os.environ and os.environ.get("SUBMITIT_EXECUTOR"):
        # A job of Hydra's submitit launcher (the sweep extra); tasks_per_node=N starts N tasks.
        from submitit import JobEnvironment
        from submitit.helpers import TorchDistributedEnvironment

        if JobEnvironment().num_tasks > 1:
            TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    return World(
        rank=int(os.environ.get("RANK", "0")),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        size=int(os.environ.get("WORLD_SIZE", "1")),
    )


def start_world() -> World:
    """This process's :class:`World`, its process group started on first call (gloo for CPU
    tensors, NCCL for CUDA tensors where CUDA is available)."""
    world = launched_world()
    if world.distributed and not dist.is_initialized():
        dist.init_process_group(process_group_backend(torch.cuda.is_available()), timeout=COLLECTIVE_TIMEOUT)
    return world


def rank_device(device: torch.device, world: World) -> torch.device:
    """Each rank's own GPU (its local rank among those visible); the CPU stays the CPU."""
    if device.type != "cuda" or not world.distributed:
        return device
    index = rank_gpu_index(world.local_rank, torch.cuda.device_count())
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def rank_seed(seed: int, rank: int) -> int:
    """A seed for rank ``rank``'s noise stream, independent of the other ranks' streams and runs' seeds."""
    return int(np.random.SeedSequence([seed, rank]).generate_state(1)[0])


def shard(indices: Tensor, world: World) -> Tensor:
    """This rank's part of a global batch: contiguous, as equal as the batch allows.

    An epoch's last batch may hold fewer images than there are ranks; then each rank takes one of
    them (some twice), since a rank without images would have nothing to average.
    """
    if len(indices) < world.size:
        return indices[world.rank % len(indices)].reshape(1)
    part = shard_range(len(indices), world)
    return indices[part.start : part.stop]


def shard_range(count: int, world: World) -> range:
    """This rank's part of ``count`` items: contiguous, the sizes differing by at most one."""
    bounds = [count * rank // world.size for rank in range(world.size + 1)]
    return range(bounds[world.rank], bounds[world.rank + 1])


def broadcast_networks(networks: Iterable[nn.Module]) -> None:
    """Rank 0's parameters and buffers on every rank (after building or restoring)."""
    for network in networks:
        for tensor in [*network.parameters(), *network.buffers()]:
            dist.broadcast(tensor.data, src=0)


def broadcast_buffers(networks: Iterable[nn.Module]) -> None:
    """Rank 0's buffers (BatchNorm's running statistics) on every rank, before they are used or saved."""
    for network in networks:
        for buffer in network.buffers():
            dist.broadcast(buffer, src=0)


def average_gradients_before_steps(optimizers: Iterable[torch.optim.Optimizer], world: World) -> None:
    """Before each ``step()`` of these optimizers, their parameters' gradients become the mean over the ranks."""
    for optimizer in optimizers:
        optimizer.register_step_pre_hook(lambda optimizer, args, kwargs: average_gradients(optimizer, world))


def average_gradients(optimizer: torch.optim.Optimizer, world: World) -> None:
    """One all-reduce of the flattened gradients."""
    # Every rank runs the same graph, so the same parameters have gradients on every rank.
    parameters = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    if not parameters:
        return
    flat = torch.cat([parameter.grad.flatten() for parameter in parameters])
    dist.all_reduce(flat)
    flat /= world.size
    for parameter, gradient in zip(parameters, flat.split([p.numel() for p in parameters])):
        parameter.grad = gradient.view_as(parameter)


def any_rank(flag: bool, world: World) -> bool:
    """Whether ``flag`` holds on any rank: every rank takes the same branch after it."""
    if not world.distributed:
        return flag
    value = torch.tensor([float(flag)])  # a CPU tensor: gloo carries it, with NCCL too
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def gather_to_main(value: Any, world: World) -> list[Any] | None:
    """Every rank's ``value``, in rank order, on rank 0 (None elsewhere)."""
    if not world.distributed:
        return [value]
    gathered: list[Any] | None = [None] * world.size if world.is_main else None
    dist.gather_object(value, gathered, dst=0)
    return gathered


def all_gather(value: Any, world: World) -> list[Any]:
    """Every rank's ``value``, in rank order, on every rank."""
    if not world.distributed:
        return [value]
    gathered: list[Any] = [None] * world.size
    dist.all_gather_object(gathered, value)
    return gathered


def broadcast_from_main(value: Any, world: World) -> Any:
    """Rank 0's ``value`` on every rank."""
    if not world.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()


def join_ranks(
    networks: Iterable[nn.Module],
    optimizers: Iterable[torch.optim.Optimizer],
    saved: dict[str, Any] | None,
    seed: int,
    world: World,
    device: torch.device,
) -> None:
    """Make the ranks one run: rank 0's weights everywhere, gradients averaged before every step,
    and each rank's noise stream seeded, or restored from the checkpoint ``saved`` (if any)."""
    broadcast_networks(networks)
    average_gradients_before_steps(optimizers, world)
    saved_streams = None if saved is None else saved["rng"].get(RANK_STREAMS_KEY)
    if world.rank > 0:
        if saved_streams is not None and len(saved_streams) == world.size:
            restore_stream(saved_streams[world.rank], device)
        else:
            torch.manual_seed(rank_seed(seed, world.rank))
    barrier(world)


def saved_world_size(saved: dict[str, Any]) -> int:
    """How many ranks wrote the checkpoint ``saved``."""
    return len(saved["rng"].get(RANK_STREAMS_KEY) or [None])


def warn_on_another_world_size(saved: dict[str, Any], world: World) -> None:
    """A resume is exact only at the world size the checkpoint was written with; say so otherwise."""
    if saved_world_size(saved) != world.size and world.is_main:
        log.warning(
            "the checkpoint was written by %d rank(s) and this run has %d: the weights and optimizers continue, "
            "but the noise differs from the interrupted run's (a resume is exact at the same world size)",
            saved_world_size(saved),
            world.size,
        )


# Where a checkpoint of several ranks keeps each rank's noise stream (under "rng"); rank 0's is also
# the checkpoint's own "torch" and "cuda" state, which a single process restores.
RANK_STREAMS_KEY = "ranks"


def rank_streams(world: World, device: torch.device) -> list[dict[str, Any]] | None:
    """Every rank's torch stream (and its GPU's), on rank 0, for a checkpoint; None for one process
    (the checkpoint's own random state is then all there is) and on the other ranks."""
    if not world.distributed:
        return None
    own = {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
    }
    return gather_to_main(own, world)


def restore_stream(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


def quiet_other_ranks(world: World) -> None:
    """Only rank 0 writes the run's log: the other ranks drop their log files and show warnings only."""
    if world.is_main:
        return
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, logging.FileHandler):
            root.removeHandler(handler)
            handler.close()
    root.setLevel(logging.WARNING)
