"""``liver-gan-train``: one GAN training run (or a sweep of them with ``-m``), composed from conf/.

The task returns ``metrics[optimized_metric]`` (FID by default; hparams_search presets set it)
for Hydra sweepers to optimise.  In a single run, a diverged training or missing Inception
weights end the program with one line and status 2 (after everything else is saved); in a
multirun the job returns ``inf`` instead, so that the sweep goes on and counts the job as the
worst result.

A killed run continues in its own run dir from its last checkpoint::

    liver-gan-train <the same overrides> hydra.run.dir=<its run dir> trainer.resume=auto
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from liver_gan.cli import report_user_errors, run_hydra_app
from liver_gan.errors import LiverGanError
from liver_gan.metrics.inception import FIDWeightsUnavailable
from liver_gan.metrics.registry import check_optimized_metric
from liver_gan.training.loop import TrainingDiverged, train

log = logging.getLogger(__name__)


@report_user_errors
def train_task(cfg: DictConfig) -> float:
    """Train the composed run in Hydra's run dir; return its ``optimized_metric`` (inf without one)."""
    hydra_config = HydraConfig.get()
    multirun = hydra_config.mode == RunMode.MULTIRUN
    try:
        if cfg.eval.enabled:
            check_optimized_metric(cfg.optimized_metric, cfg.eval.metrics)
        metrics = train(cfg, Path(hydra_config.runtime.output_dir))
    except (TrainingDiverged, FIDWeightsUnavailable) as error:
        if not multirun:
            raise
        log.error("%s (this job scores inf)", error)
        return math.inf
    except Exception as error:
        if multirun:
            # Hydra keeps a job's exception without logging it; this line is what lets
            # liver-gan-summary list the job as failed rather than unfinished.
            log.error("the job failed: %s", error, exc_info=not isinstance(error, LiverGanError))
        raise
    # A run without evaluation (eval.enabled=false) has no metric to optimise.
    score = metrics.get(cfg.optimized_metric)
    return math.inf if score is None else float(score)


def main() -> None:
    run_hydra_app(train_task, "train")


if __name__ == "__main__":
    main()
