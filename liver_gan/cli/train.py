"""``liver-gan-train``: one GAN training run (or a sweep of them with ``-m``), composed from conf/.

The task returns ``metrics[optimized_metric]`` (FID by default; hparams_search presets set it)
for Hydra sweepers to optimise.  In a single run, a diverged training or missing Inception
weights end the program with one line and status 2 (after everything else is saved); in a
multirun the job returns ``inf`` instead, so that the sweep goes on and counts the job as the
worst result.

A killed run continues in its own run dir from its last checkpoint, with the overrides it was
started with (saved in its ``.hydra/overrides.yaml``)::

    liver-gan-train hydra.run.dir=<its run dir> trainer.resume=auto
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from liver_gan.cli import report_user_errors, scripts
from liver_gan.cli.config_tree import print_config_tree, wants_config_tree
from liver_gan.device import reserve_cublas_workspace
from liver_gan.metrics.inception import FIDWeightsUnavailable
from liver_gan.metrics.registry import check_optimized_metric
from liver_gan.distributed import quiet_other_ranks, start_world
from liver_gan.training.checks import TrainingDiverged
from liver_gan.training.loop import train
from liver_gan.training.run_dir import holds_a_run, write_hydra_record

log = logging.getLogger(__name__)

# At import, before this process's first CUDA matmul: trainer.deterministic needs it (liver_gan.device says why).
reserve_cublas_workspace()


@report_user_errors
def train_task(cfg: DictConfig) -> float:
    """Train the composed run in Hydra's run dir; return its ``optimized_metric`` (inf without one).

    The task records the config in ``.hydra/`` itself: at once in a new run dir, and only once the
    run has passed its checks in one that holds an earlier run.  Errors reach the run's log through
    :func:`report_user_errors`, which is what lets liver-gan-summary list a failed job as failed.
    """
    world = start_world()  # one process, or a rank of a torchrun or submitit launch: only rank 0 writes
    quiet_other_ranks(world)
    if wants_config_tree(cfg.print_config) and world.is_main:
        print_config_tree(cfg)
    hydra_config = HydraConfig.get()
    run_dir = Path(hydra_config.runtime.output_dir)

    def record_config() -> None:
        write_hydra_record(run_dir, cfg)

    if not holds_a_run(run_dir) and world.is_main:
        record_config()  # nothing to keep, and liver-gan-summary lists even a job refused at its start
    if cfg.eval.enabled:
        check_optimized_metric(cfg.optimized_metric, cfg.eval.metrics)
    try:
        metrics = train(cfg, run_dir, on_start=record_config)
    except (TrainingDiverged, FIDWeightsUnavailable) as error:
        if hydra_config.mode != RunMode.MULTIRUN:
            raise
        log.error("%s (this job scores inf)", error)
        return math.inf
    # A run without evaluation (eval.enabled=false) has no metric to optimise.
    score = metrics.get(cfg.optimized_metric)
    return math.inf if score is None else float(score)


def main() -> None:
    scripts.train()  # the console script: see liver_gan/cli/scripts.py


if __name__ == "__main__":
    main()
