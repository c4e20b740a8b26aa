"""``dataset_summary.json``: slice counts per split and class, the split's patients, and
per-patient counts, in a fixed form that other tools read; and its Table 1 style rendering."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from liver_gan.atomic import atomic_write_json
from liver_gan.data.labels import CLASS_NAMES

SUMMARY_FILE = "dataset_summary.json"


def dataset_summary(per_patient: Mapping[str, Mapping[str, int]], train: list[int], val: list[int]) -> dict[str, Any]:
    """Counts over both classes, whatever ``dataset.subset`` keeps for training.

    ``per_patient`` maps a patient id (as a string, the JSON key) to its ``slices``,
    ``liver_slices`` and ``tumor_slices``.
    """
    return {
        "counts": {"train": _class_counts(per_patient, train), "val": _class_counts(per_patient, val)},
        "patients": {"train": sorted(train), "val": sorted(val)},
        "per_patient": {
            patient: dict(per_patient[patient]) for patient in sorted(per_patient, key=int)
        },
    }


def _class_counts(per_patient: Mapping[str, Mapping[str, int]], patients: list[int]) -> dict[str, int]:
    tumor = sum(per_patient[str(patient)]["tumor_slices"] for patient in patients)
    liver = sum(per_patient[str(patient)]["liver_slices"] for patient in patients)
    healthy_name, tumor_name = CLASS_NAMES
    return {healthy_name: liver - tumor, tumor_name: tumor}


def write_dataset_summary(summary: Mapping[str, Any], run_dir: Path) -> Path:
    path = Path(run_dir) / SUMMARY_FILE
    atomic_write_json(path, summary)
    return path


def format_summary_table(summary: Mapping[str, Any]) -> str:
    """Slices per split and class, plus patients, like the thesis's Table 1."""
    rows = [(split, summary["counts"][split], len(summary["patients"][split])) for split in ("train", "val")]
    total_counts = {name: sum(counts[name] for _, counts, _ in rows) for name in CLASS_NAMES}
    rows.append(("total", total_counts, sum(patients for _, _, patients in rows)))
    header = f"{'':<8}" + "".join(f"{column:>10}" for column in (*CLASS_NAMES, "total", "patients"))
    lines = [header]
    for split, counts, patients in rows:
        cells = [counts[name] for name in CLASS_NAMES] + [sum(counts.values()), patients]
        lines.append(f"{split:<8}" + "".join(f"{cell:>10}" for cell in cells))
    return "\n".join(lines)
