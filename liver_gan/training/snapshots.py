"""FID during training (issue 14): with ``eval.every_kimg`` set, the loop evaluates the sampler (the
EMA copy when there is one) every that many thousand training images.

A snapshot computes FID alone, on ``eval.snapshot_samples`` generated images against the same
real pool as the final evaluation (whose cached statistics it reuses), so that it costs a fraction
of the final evaluation, which stays as it is.  Each snapshot appends one line to
``metrics.jsonl``; the loop logs it as ``metrics/fid`` and keeps ``checkpoints/best.pt`` at the
lowest snapshot FID.  Snapshots draw their noise from their own seeded generator
(:func:`liver_gan.sampling.generate`), so they leave the training's random streams alone and a
resumed run stays exact; a resumed run first drops the lines its checkpoint had not reached.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from torch import nn

from liver_gan.atomic import atomic_write_text
from liver_gan.data.dataset import PreparedDataset
from liver_gan.errors import LiverGanError
from liver_gan.metrics.evaluate import evaluate_generator
from liver_gan.distributed import SINGLE_PROCESS, World

SNAPSHOT_LOG = "metrics.jsonl"


def check_snapshot_options(eval_cfg: DictConfig) -> None:
    if eval_cfg.every_kimg is not None and eval_cfg.every_kimg <= 0:
        raise LiverGanError(f"eval.every_kimg={eval_cfg.every_kimg} must be positive, or null for no FID during training")
    if eval_cfg.snapshot_samples < 2:
        raise LiverGanError(f"eval.snapshot_samples={eval_cfg.snapshot_samples} must be at least 2")


def snapshot_due(images_before: int, images_after: int, every_kimg: float | None) -> bool:
    """Whether a step that took the images seen from ``images_before`` to ``images_after`` crossed a
    multiple of ``every_kimg`` thousand images."""
    if every_kimg is None:
        return False
    period = every_kimg * 1000
    return images_after // period > images_before // period


def snapshot_options(eval_cfg: DictConfig) -> DictConfig:
    """The final evaluation's options with FID alone, ``snapshot_samples`` fakes and no image dump."""
    options = OmegaConf.create(OmegaConf.to_container(eval_cfg))
    with open_dict(options):
        options.metrics = ["fid"]
        options.num_samples = eval_cfg.snapshot_samples
        options.fid.save_images = False
    return options


def evaluate_snapshot(
    sampler: nn.Module,
    dataset: PreparedDataset,
    eval_cfg: DictConfig,
    run_dir: Path,
    device: torch.device,
    seed: int,
    step: int,
    kimg: float,
    world: World = SINGLE_PROCESS,
) -> dict[str, Any] | None:
    """One snapshot: its FID record, also appended to ``metrics.jsonl`` (rewritten atomically: a
    killed write leaves the file as it was); None on a rank other than 0 of a run of several."""
    result = evaluate_generator(sampler, dataset, snapshot_options(eval_cfg), run_dir, device, seed, world)
    if result is None:
        return None
    record = {"step": step, "kimg": kimg, **{key: value for key, value in result.items() if key != "metrics"}}
    path = Path(run_dir) / SNAPSHOT_LOG
    earlier = path.read_text() if path.is_file() else ""
    atomic_write_text(path, earlier + json.dumps(record) + "\n")
    return record


def keep_snapshots_until(run_dir: Path, step: int) -> None:
    """Drop the ``metrics.jsonl`` lines after ``step`` (all of them for a fresh start), atomically."""
    path = Path(run_dir) / SNAPSHOT_LOG
    if not path.is_file():
        return
    kept = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
    atomic_write_text(path, "".join(f"{line}\n" for line in kept))
