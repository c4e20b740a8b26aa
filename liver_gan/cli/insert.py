"""``liver-gan-insert``: paint tumors into the training patients' healthy liver and write new
LiTS-format pairs, ``manifest.csv`` and ``insert.json`` into the run dir (liver_gan/lesions/insert.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from liver_gan.cli import report_user_errors, scripts
from liver_gan.lesions.insert import MANIFEST, insert_lesions
from liver_gan.training.run_dir import write_hydra_record


@report_user_errors
def insert(cfg: DictConfig) -> dict[str, Any]:
    hydra = HydraConfig.get()
    run_dir = Path(hydra.runtime.output_dir)
    summary = insert_lesions(cfg, run_dir, hydra.runtime.choices.lesion, lambda: write_hydra_record(run_dir, cfg))
    patients = summary["patients"]
    print(
        f"inserted {summary['lesions']} lesions into {len(summary['inserted_patients'])} training patients "
        f"(val {patients['val']}, test {patients['test']} left untouched); wrote {run_dir} and {run_dir / MANIFEST}"
    )
    return summary


def main() -> None:
    scripts.insert()  # the console script: see liver_gan/cli/scripts.py
