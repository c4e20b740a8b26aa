"""``liver-gan-utility``: does the synthetic data help a healthy-vs-tumor classifier, or with
``task=segmentation`` a liver and tumor U-Net?

Give a conditional run (``generator=RUN_DIR_OR_PT``) or one run per class
(``tumor_generator=... healthy_generator=...``). The real slices are the GAN's own dataset, rebuilt
from the checkpoint's config with the same patient split (the GAN's seed), over both classes.
Prints a table and writes ``utility.json`` and TensorBoard scalars into the run dir.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from liver_gan.cli import report_user_errors, scripts
from liver_gan.device import resolve_device
from liver_gan.downstream.report import UTILITY_FILE, format_utility_table, utility_report, write_report


@report_user_errors
def utility(cfg: DictConfig) -> dict[str, Any]:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    report = utility_report(cfg, resolve_device(cfg.device, "device"))
    write_report(report, run_dir)
    print(format_utility_table(report))
    print(f"wrote {run_dir / UTILITY_FILE}; tensorboard --logdir {run_dir / 'tb'}")
    return report


def main() -> None:
    scripts.utility()  # the console script: see liver_gan/cli/scripts.py
