"""``liver-gan-prepare``: build (or reuse) the slice cache, write ``dataset_summary.json`` into the
run directory and print it as a table; ``export=imagefolder`` also writes ``<run_dir>/imagefolder/``."""

from __future__ import annotations

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from liver_gan.cli import report_user_errors, scripts
from liver_gan.data.dataset import prepare_dataset
from liver_gan.data.export import export_imagefolder, exported_counts
from liver_gan.data.labels import CLASS_NAMES, SUBSET_CLASSES
from liver_gan.data.schema import Subset
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
        directory = export_imagefolder(dataset, run_dir / "imagefolder", cfg.overwrite)
        counts = ", ".join(f"{folder} {count}" for folder, count in exported_counts(dataset).items())
        print(f"ImageFolder export written to {directory}: {counts} PNGs{_classes_left_out(dataset.subset)}")


def _classes_left_out(subset: Subset) -> str:
    """What the export leaves out of the summary's counts: the class ``dataset.subset`` drops."""
    dropped = [CLASS_NAMES[label] for label in SUBSET_CLASSES[Subset.all] if label not in SUBSET_CLASSES[subset]]
    if not dropped:
        return ""
    return (
        f" (dataset.subset={subset.value}: the {' and '.join(dropped)} slices counted above are not exported; "
        "dataset.subset=all exports both)"
    )


def main() -> None:
    scripts.prepare()  # the console script: see liver_gan/cli/scripts.py
