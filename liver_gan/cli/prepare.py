"""``liver-gan-prepare``: build (or reuse) the slice cache, write ``dataset_summary.json`` into the
run directory and print it as a table; ``export=imagefolder`` also writes ``<run_dir>/imagefolder/``."""

from __future__ import annotations

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from liver_gan.cli import report_user_errors, run_hydra_app
from liver_gan.data.dataset import prepare_dataset
from liver_gan.data.export import export_imagefolder
from liver_gan.data.summary import format_summary_table, write_dataset_summary
from liver_gan.errors import LiverGanError

EXPORTS = ("imagefolder",)


@report_user_errors
def prepare(cfg: DictConfig) -> None:
    if cfg.export is not None and cfg.export not in EXPORTS:
        raise LiverGanError(f"export={cfg.export} is unknown: use export=imagefolder, or leave export out")
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    dataset = prepare_dataset(cfg.dataset, cfg.seed)
    summary_path = write_dataset_summary(dataset.summary, run_dir)
    print(format_summary_table(dataset.summary))
    print(f"dataset cache key {dataset.key}; summary written to {summary_path}")
    if cfg.export == "imagefolder":
        print(f"ImageFolder export written to {export_imagefolder(dataset, run_dir / 'imagefolder', cfg.overwrite)}")


def main() -> None:
    run_hydra_app(prepare, "prepare")
