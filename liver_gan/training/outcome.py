"""How a training run ends, as its user reads it: the outcome, every metric measured and where to
look (:func:`log_result`), and the step and epoch counts as the start and end lines state them."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Mapping

from liver_gan.metrics.summary import metric_lines
from liver_gan.progress import format_duration

log = logging.getLogger(__name__)


def steps_text(steps: int) -> str:
    """``1 step``, ``5 steps``."""
    return "1 step" if steps == 1 else f"{steps} steps"


def epochs_text(steps: int, steps_per_epoch: int) -> str:
    """How many epochs ``steps`` are, with the fraction of a partial one: ``1 epoch``, ``0.4 epochs``,
    ``2.5 epochs`` (two decimals at most, never rounded up to a whole epoch that was not trained)."""
    epochs = math.floor(100 * steps / steps_per_epoch) / 100
    number = f"{epochs:.2f}".rstrip("0").rstrip(".")
    return f"{number} epoch" if number == "1" else f"{number} epochs"


def last_sample_grid(run_dir: Path) -> Path | None:
    """The newest samples/*.png (a resumed run writes after the grids it found)."""
    grids = list((run_dir / "samples").glob("*.png"))
    return max(grids, key=lambda path: path.stat().st_mtime_ns) if grids else None


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
