"""``liver-gan-utility``: does the synthetic data help a healthy-vs-tumor classifier, or with
``task=segmentation`` a liver and tumor U-Net?

Give a conditional run (``generator=RUN_DIR_OR_PT``) or one run per class
(``tumor_generator=... healthy_generator=...``): the real slices are the GAN's own dataset, rebuilt
from the checkpoint's config with the same patient split (the GAN's seed), over both classes.  Or
give an insert run (``inserted=R``): the real slices come from its record, the synthetic ones are
its volumes with painted tumors; ``task=realism`` compares those tumors with real ones, and
``task=nnunet out=DIR`` writes them with their real patients as an nnU-Net v2 raw dataset.
Prints a table and writes ``utility.json`` (``realism.json``) and TensorBoard scalars into the run dir.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from liver_gan.atomic import atomic_write_json
from liver_gan.cli import report_user_errors, scripts
from liver_gan.config import UtilityTask
from liver_gan.device import resolve_device
from liver_gan.errors import LiverGanError
from liver_gan.data.segmentation_export import NNUNET_SPLITS_FILE
from liver_gan.downstream.inserted import export_insert_run_nnunet
from liver_gan.downstream.realism import REALISM_FILE, format_realism_table, realism_report
from liver_gan.downstream.report import UTILITY_FILE, format_utility_table, utility_report, write_report


@report_user_errors
def utility(cfg: DictConfig) -> dict[str, Any]:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    if UtilityTask(cfg.task) is UtilityTask.nnunet:
        return {"nnunet_dataset": str(write_nnunet_dataset(cfg))}
    device = resolve_device(cfg.device, "device")
    if UtilityTask(cfg.task) is UtilityTask.realism:
        report = realism_report(cfg, run_dir, device)
        atomic_write_json(run_dir / REALISM_FILE, report)
        print(format_realism_table(report))
        print(f"wrote {run_dir / REALISM_FILE}")
        return report
    report = utility_report(cfg, device)
    write_report(report, run_dir)
    print(format_utility_table(report))
    print(f"wrote {run_dir / UTILITY_FILE}; tensorboard --logdir {run_dir / 'tb'}")
    return report


def write_nnunet_dataset(cfg: DictConfig) -> Path:
    if cfg.inserted is None or cfg.out is None:
        raise LiverGanError("task=nnunet needs inserted=INSERT_RUN and out=.../nnUNet_raw/DatasetXXX_Name")
    directory = export_insert_run_nnunet(cfg.inserted, cfg.out)
    print(f"wrote {directory}; nnUNetv2_plan_and_preprocess copies its {NNUNET_SPLITS_FILE} into the preprocessed folder")
    return directory


def main() -> None:
    scripts.utility()  # the console script: see liver_gan/cli/scripts.py
