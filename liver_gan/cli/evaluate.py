"""``liver-gan-eval``: the ``eval.metrics`` of a checkpoint against its dataset, or of two image folders.

- ``liver-gan-eval checkpoint=RUN_DIR_OR_PT``: rebuilds the run's dataset from the checkpoint's
  config and measures its generator with the ``eval.*`` settings given here (not the run's).
- ``liver-gan-eval real=DIR fake=DIR``: any two folders, read as pytorch-fid's CLI reads them.

Prints a table and writes ``<run dir>/eval.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from liver_gan.atomic import atomic_write_json
from liver_gan.cli import report_user_errors, scripts
from liver_gan.device import resolve_device
from liver_gan.errors import LiverGanError
from liver_gan.metrics.evaluate import check_eval_options, evaluate_folders, evaluate_generator
from liver_gan.metrics.summary import metric_lines
from liver_gan.runs import given_paths, load_generator, run_dataset


def evaluate_checkpoint(cfg: DictConfig, run_dir: Path, device: torch.device) -> dict[str, Any]:
    generator, train_cfg = load_generator(Path(cfg.checkpoint), device)
    check_eval_options(cfg.eval, train_cfg.dataset)  # before the dataset build
    dataset = run_dataset(train_cfg, **given_paths(cfg.dataset))
    # The run's time budget sizes the mask check's U-Net on a CPU, as at the end of the run.
    budget_minutes = train_cfg.trainer.max_minutes
    metrics = evaluate_generator(generator, dataset, cfg.eval, run_dir, device, cfg.seed, budget_minutes=budget_minutes)
    return {"checkpoint": cfg.checkpoint, **metrics}


def format_metrics_table(metrics: dict[str, Any]) -> str:
    """Every metric measured, grouped as at the end of a training run (liver_gan/metrics/summary.py)."""
    return "\n".join(metric_lines(metrics))


@report_user_errors
def evaluate(cfg: DictConfig) -> None:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    folders = _compares_folders(cfg)
    device = resolve_device(cfg.device, "device")
    if folders:
        metrics = evaluate_folders(Path(cfg.real), Path(cfg.fake), cfg.eval, device, cfg.seed)
    else:
        metrics = evaluate_checkpoint(cfg, run_dir, device)
    print(format_metrics_table(metrics))
    atomic_write_json(run_dir / "eval.json", metrics)
    print(f"wrote {run_dir / 'eval.json'}")


def _compares_folders(cfg: DictConfig) -> bool:
    """True for real=DIR fake=DIR, False for checkpoint=...; anything else is a usage error."""
    given = {name: cfg[name] is not None for name in ("checkpoint", "real", "fake")}
    if given == {"checkpoint": True, "real": False, "fake": False}:
        return False
    if given == {"checkpoint": False, "real": True, "fake": True}:
        return True
    raise LiverGanError("give either checkpoint=RUN_DIR_OR_PT or both real=DIR and fake=DIR")


def main() -> None:
    scripts.evaluate()  # the console script: see liver_gan/cli/scripts.py
