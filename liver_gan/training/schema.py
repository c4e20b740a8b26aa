"""Schemas of the ``trainer`` and ``optimizer`` config groups (conf/trainer/*.yaml, conf/optimizer/*.yaml),
registered in liver_gan/config.py; read by the training code beside them (loop.py, optim.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import List, Optional

from omegaconf import MISSING


class OptimizerImplementation(str, Enum):
    auto = "auto"
    fused = "fused"
    foreach = "foreach"
    for_loop = "for_loop"


@dataclass
class OptimizerConfig:
    """One optimizer class for both networks; ``d_lr`` defaults to ``lr``."""

    _target_: str = MISSING  # a torch.optim class, e.g. torch.optim.Adam
    lr: float = 2e-4
    d_lr: Optional[float] = None
    betas: List[float] = field(default_factory=lambda: [0.5, 0.999])
    weight_decay: float = 0.0
    implementation: OptimizerImplementation = OptimizerImplementation.auto


@dataclass
class TrainerConfig:
    epochs: int = 20
    max_steps: Optional[int] = None
    # Stop after this many minutes of training, then evaluate and checkpoint as at any end (SLURM
    # time limits, "30 minutes each" comparisons); None: no time budget.
    max_minutes: Optional[float] = None
    batch_size: int = 64
    log_every: int = 50  # TensorBoard scalars every this many steps, and at the last step
    tick_seconds: float = 30.0  # a progress line (step, kimg, images/s, ETA, memory) this often; 0: every step
    sample_every: int = 5
    checkpoint_every: int = 5
    num_fixed_samples: int = 64
    # Half-life, in thousands of images, of the generator's exponential moving average
    # (stylegan2-ada's ema_kimg; it uses 10).  The EMA copy draws the sample grids and serves
    # evaluation and every tool that opens the run.  None: no EMA copy.
    ema_kimg: Optional[float] = None
    # stylegan2-ada's ema_rampup: the half-life is at most this fraction of the images seen so far,
    # so that the copy follows the fast early training instead of averaging in the first weights.
    # None: the half-life is ema_kimg from the first step.
    ema_rampup: Optional[float] = None
    resume: str = "none"  # none | auto | path to a checkpoint
    overwrite: bool = False  # start afresh in a run dir that holds checkpoints, replacing that run
    keep_last_n: Optional[int] = None  # epoch checkpoints kept besides last.pt; None keeps all
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = False  # bf16 autocast on cuda
    deterministic: bool = False
    # torch's intra-op threads (liver_gan/training/threads.py). None: the usable cores divided by the
    # jobs that run at once on this machine (a joblib sweep's n_jobs, torchrun's local ranks), so
    # that concurrent runs share the cores instead of each starting one thread per core.
    num_threads: Optional[int] = None
