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
from liver_gan.cli import report_user_errors, run_hydra_app
from liver_gan.device import resolve_device
from liver_gan.errors import LiverGanError
from liver_gan.metrics.evaluate import check_eval_options, evaluate_folders, evaluate_generator
from liver_gan.runs import given_paths, load_generator, run_dataset


def evaluate_checkpoint(cfg: DictConfig, run_dir: Path, device: torch.device) -> dict[str, Any]:
    generator, train_cfg = load_generator(Path(cfg.checkpoint), device)
    check_eval_options(cfg.eval, train_cfg.dataset)  # before the dataset build
    dataset = run_dataset(train_cfg, **given_paths(cfg.dataset))
    metrics = evaluate_generator(generator, dataset, cfg.eval, run_dir, device, cfg.seed)
    return {"checkpoint": cfg.checkpoint, **metrics}


def format_metrics_table(metrics: dict[str, Any]) -> str:
    """One row overall and one per class: FID, KID mean ± std (- where not measured), image counts."""
    rows = [("overall", metrics)] + list(metrics.get("per_class", {}).items())
    lines = [f"{'':<10} {'FID':>10} {'KID (mean ± std)':>24} {'real':>6} {'fake':>6}"]
    for name, row in rows:
        fid = "-" if row.get("fid") is None else f"{row['fid']:.3f}"
        kid = "-" if row.get("kid_mean") is None else f"{row['kid_mean']:.5f} ± {row['kid_std']:.5f}"
        lines.append(f"{name:<10} {fid:>10} {kid:>24} {row['num_real']:>6} {row['num_fake']:>6}")
    return "\n".join(lines)


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
    run_hydra_app(evaluate, "evaluate")
