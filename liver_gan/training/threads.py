"""torch's intra-op threads for a run: a fair share of the cores when several runs share them.

torch starts one intra-op thread per core in every process. Two runs on one workstation, or the
jobs of a joblib sweep, then run twice as many busy threads as there are cores, and each thread
spends its time waiting for the others (measured in BENCHMARKS.md: 20x slower where 3x was fair).
``trainer.num_threads`` sets the count; left at None it is the usable cores (the CPU affinity mask,
which SLURM and ``taskset`` narrow) divided by the processes that run at once on this machine: a
joblib launcher's ``n_jobs`` in a multirun times torchrun's local ranks.
"""

from __future__ import annotations

import logging
import os
from typing import Optional

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

from liver_gan.errors import LiverGanError

log = logging.getLogger(__name__)

JOBLIB_LAUNCHER = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"


def usable_cores() -> int:
    """The cores this process may run on: its affinity mask where the system has one."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def concurrent_jobs(cores: int) -> int:
    """How many liver-gan processes run at once on this machine, this one included.

    A joblib sweep runs ``n_jobs`` jobs at once (joblib's convention: -1 is every core, -2 all but
    one); torchrun starts ``LOCAL_WORLD_SIZE`` ranks per node. Anything else counts as one job.
    """
    jobs = 1
    if HydraConfig.initialized():
        hydra = HydraConfig.get()
        launcher = hydra.launcher
        if hydra.mode == RunMode.MULTIRUN and launcher.get("_target_") == JOBLIB_LAUNCHER:
            n_jobs = int(launcher.get("n_jobs") or 1)
            jobs = n_jobs if n_jobs > 0 else max(1, cores + 1 + n_jobs)
    return jobs * int(os.environ.get("LOCAL_WORLD_SIZE", "1"))


def choose_num_threads(requested: Optional[int], cores: int, jobs: int) -> int:
    """``requested``, or the cores divided by the concurrent jobs (at least one thread)."""
    if requested is not None:
        if requested < 1:
            raise LiverGanError(f"trainer.num_threads={requested}: use a positive count, or null for a fair share")
        return requested
    return max(1, cores // max(1, jobs))


def apply_num_threads(requested: Optional[int]) -> int:
    """Set torch's intra-op threads for this run and say what was chosen and why."""
    cores = usable_cores()
    jobs = concurrent_jobs(cores)
    threads = choose_num_threads(requested, cores, jobs)
    torch.set_num_threads(threads)
    reason = "trainer.num_threads" if requested is not None else f"{cores} cores / {jobs} concurrent job(s)"
    log.info("torch intra-op threads: %d (%s)", threads, reason)
    return threads
