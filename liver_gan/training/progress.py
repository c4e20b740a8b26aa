"""What a training run tells its user while it runs and when it ends.

While it runs: a tqdm bar with the ETA on a terminal, and, on a terminal or not, a tick line after
the first step, every ``trainer.tick_seconds`` and at the last step, as stylegan2-ada's training
loop prints them; the lines also go to ``train.log``::

    tick 3  step 120/600  epoch 40/200  kimg 7.7  27.1 img/s  elapsed 1m05s  ETA 4m20s  peak RSS 1.20 GiB  loss/D 0.412 ...

When it ends: the outcome, every metric measured and where to look (:func:`log_result`).
"""

from __future__ import annotations

import logging
import math
import resource
import sys
import time
from pathlib import Path
from typing import Any, Mapping

import torch
from tqdm import tqdm

import liver_gan.progress
from liver_gan.device import device_clock
from liver_gan.metrics.summary import metric_lines
from liver_gan.progress import format_duration

log = logging.getLogger(__name__)


def peak_memory(device: torch.device) -> str:
    """The most memory the run has held: CUDA memory allocated on a GPU, the process's resident set on the CPU."""
    if device.type == "cuda":
        return f"peak GPU {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB"
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    bytes_per_unit = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is in KiB on Linux
    return f"peak RSS {peak * bytes_per_unit / 2**30:.2f} GiB"


class TrainingTicks:
    """The bar and the tick lines of one training session, from ``first_step`` to ``total_steps`` or
    until ``seconds_left`` (what ``trainer.max_minutes`` leaves of the budget) have passed."""

    def __init__(
        self,
        total_steps: int,
        first_step: int,
        steps_per_epoch: int,
        device: torch.device,
        show: bool = True,
        seconds_left: float = math.inf,
    ) -> None:
        self.total_steps = total_steps
        self.first_step = first_step
        self.seconds_left = seconds_left
        self.steps_per_epoch = steps_per_epoch
        self.device = device
        self.count = 0
        self.images = 0
        self.start = device_clock(device)
        self.last_tick: float | None = None
        # disable=None: a bar on a terminal only; show=False (the ranks but 0 of a run of several): never.
        self.bar = tqdm(
            total=total_steps, initial=first_step, unit="step", dynamic_ncols=True, disable=None if show else True
        )

    def advance(self, images: int) -> None:
        """One step of ``images`` images done."""
        self.images += images
        self.bar.update()

    def due(self, step: int) -> bool:
        """After the first step, every ``tick_seconds`` and at the last step."""
        if self.last_tick is None or step == self.total_steps:
            return True
        return time.perf_counter() - self.last_tick >= liver_gan.progress.TICK_SECONDS

    def tick(self, step: int, kimg: float, means: Mapping[str, float]) -> None:
        """Log the tick line for ``step``, with the loss means since the last tick."""
        now = device_clock(self.device)
        self.last_tick = now
        self.count += 1
        elapsed = now - self.start
        steps_done = step - self.first_step
        eta_seconds = (self.total_steps - step) * elapsed / steps_done if steps_done else math.inf
        eta_seconds = min(eta_seconds, max(self.seconds_left - elapsed, 0.0))  # the time budget ends it first
        eta = "?" if math.isinf(eta_seconds) else format_duration(eta_seconds)
        total_epochs = math.ceil(self.total_steps / self.steps_per_epoch)
        epoch = min(math.ceil(step / self.steps_per_epoch), total_epochs)
        fields = [
            f"tick {self.count}",
            f"step {step}/{self.total_steps}",
            f"epoch {epoch}/{total_epochs}",
            f"kimg {kimg:.1f}",
            f"{self.images / elapsed if elapsed > 0 else 0.0:.1f} img/s",
            f"elapsed {format_duration(elapsed)}",
            f"ETA {eta}",
            peak_memory(self.device),
            *(f"{name} {value:.3f}" for name, value in means.items()),
        ]
        log.info("  ".join(fields))
        self.bar.set_postfix({name: f"{value:.3f}" for name, value in means.items()}, refresh=False)

    def close(self) -> None:
        self.bar.close()

    def __enter__(self) -> "TrainingTicks":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def steps_text(steps: int) -> str:
    """``1 step``, ``5 steps``."""
    return "1 step" if steps == 1 else f"{steps} steps"


def epochs_text(steps: int, steps_per_epoch: int) -> str:
    """How many epochs ``steps`` are, with the fraction of a partial one: ``1 epoch``, ``0.4 epochs``,
    ``2.5 epochs`` (two decimals at most, never rounded up to a whole epoch that was not trained)."""
    epochs = math.floor(100 * steps / steps_per_epoch) / 100
    number = f"{epochs:.2f}".rstrip("0").rstrip(".")
    return f"{number} epoch" if number == "1" else f"{number} epochs"


def result_lines(metrics: Mapping[str, Any], run_dir: Path, last_grid: Path | None, steps_per_epoch: int) -> list[str]:
    """The run's outcome, every metric it measured (grouped, see liver_gan/metrics/summary.py) and
    where to look: what :func:`log_result` logs."""
    budget = "; stopped by trainer.max_minutes" if metrics.get("stop_reason") == "max_minutes" else ""
    steps = metrics["steps"]
    lines = [
        f"result: {metrics['status']} after {steps_text(steps)} ({epochs_text(steps, steps_per_epoch)}, "
        f"{format_duration(metrics['train_seconds'])} of training{budget})"
    ]
    if "num_fake" in metrics:
        lines += metric_lines(metrics)
    elif metrics["status"] == "completed":
        lines.append("  no evaluation (eval.enabled=false)")
    lines += [
        f"run dir: {run_dir}",
        f"TensorBoard: tensorboard --logdir {run_dir / 'tb'}",
        f"last samples: {last_grid if last_grid is not None else 'none written'}",
    ]
    return lines


def log_result(metrics: Mapping[str, Any], run_dir: Path, last_grid: Path | None, steps_per_epoch: int) -> None:
    """The result table, on the console and in train.log (Hydra's file handler takes every record)."""
    for line in result_lines(metrics, run_dir, last_grid, steps_per_epoch):
        log.info("%s", line)
