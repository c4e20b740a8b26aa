"""``liver-gan-insert``'s work: paint lesions into every training patient of a dataset and write
the new LiTS-format pairs, the manifest (one row per lesion) and ``insert.json`` into the run dir.

The split is :func:`liver_gan.data.dataset.split_patients` with the dataset options and seed that
``prepare_dataset`` uses, so a tool reading the run's ``.hydra/config.yaml`` finds the same
patients; validation and test patients are never painted. The source folder is only read.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
from pathlib import Path
from typing import Any, Callable

import nibabel as nib
import numpy as np
from omegaconf import DictConfig, OmegaConf

from liver_gan.atomic import atomic_write_json, atomic_write_text
from liver_gan.data.dataset import dataset_root, split_patients
from liver_gan.data.labels import TUMOR_LABEL
from liver_gan.data.layouts import Case, find_cases
from liver_gan.data.schema import Layout
from liver_gan.errors import LiverGanError
from liver_gan.lesions.config import LearnedLesionConfig, ProceduralLesionConfig
from liver_gan.lesions.fit import fit_options
from liver_gan.lesions.procedural import Fill, Painting, paint_patient
from liver_gan.lesions.volumes import SourcePatient, read_patient, to_stored, write_patient
from liver_gan.progress import progress
from liver_gan.run_log import close_file_logs_in, file_logs_in

log = logging.getLogger(__name__)

MANIFEST = "manifest.csv"
SUMMARY = "insert.json"
MANIFEST_COLUMNS = (
    "patient", "lesion", "option", "seed", "centre_i", "centre_j", "centre_k",
    "centre_x_mm", "centre_y_mm", "centre_z_mm", "diameter_mm", "volume_ml", "lesion_hu", "liver_hu",
)


def insert_lesions(
    cfg: DictConfig, run_dir: Path, option: str, record: Callable[[], None] | None = None
) -> dict[str, Any]:
    """Paint and write every training patient; ``option`` is the lesion group's choice (procedural,
    learned); ``record`` (the run's .hydra/ record) is called once every check has passed."""
    root = dataset_root(cfg.dataset)
    cases = find_cases(root, Layout(cfg.dataset.layout), cfg.dataset.skip_bad)
    _check_run_dir(run_dir, root, cases)
    run_dir.mkdir(parents=True, exist_ok=True)
    has_tumor = {case.patient_id: _has_tumor(case) for case in cases}
    train, val = split_patients(
        has_tumor, cfg.dataset.val_fraction, cfg.seed,
        val_patients=cfg.dataset.val_patients, test_patients=cfg.dataset.test_patients,
    )
    if OmegaConf.is_missing(cfg.lesion, "checkpoint"):
        raise LiverGanError("lesion.checkpoint is not set: pass lesion.checkpoint=RUN_DIR_OR_PT of a trained inpainting model")
    lesion: ProceduralLesionConfig = OmegaConf.to_object(cfg.lesion)
    _check_lesion_options(lesion)
    fitted = None
    if lesion.fit_from is not None:
        lesion, fitted = fit_options(lesion, Path(lesion.fit_from).expanduser(), Layout(cfg.dataset.layout),
                                     only=train if _same_folder(lesion.fit_from, root) else None)
    fill = _learned_fill(lesion) if isinstance(lesion, LearnedLesionConfig) else None
    if record is not None:
        record()
    rows: list[dict[str, Any]] = []
    training = [case for case in cases if case.patient_id in set(train)]
    for case in progress(training, "inserting lesions", len(training), "volumes"):
        try:
            patient = read_patient(case)
        except LiverGanError as error:
            if not cfg.dataset.skip_bad:
                raise LiverGanError(f"{error} (set dataset.skip_bad=true to leave patient {case.patient_id} out)") from error
            log.warning("skipping patient %d (dataset.skip_bad=true): %s", case.patient_id, error)
            continue
        rows += _insert_patient(patient, lesion, cfg.seed, option, fill, run_dir)
    summary = {
        "source": str(root.resolve()),
        "option": option,
        "seed": int(cfg.seed),
        "patients": {"train": train, "val": val, "test": sorted(int(p) for p in cfg.dataset.test_patients or [])},
        "inserted_patients": sorted({row["patient"] for row in rows}),
        "lesions": len(rows),
        "lesion": _plain(dataclasses.asdict(lesion)),
        "fitted": fitted,
    }
    atomic_write_text(run_dir / MANIFEST, _manifest_text(rows))
    atomic_write_json(run_dir / SUMMARY, summary)
    return summary


def _insert_patient(
    patient: SourcePatient, lesion: ProceduralLesionConfig, seed: int, option: str, fill: Fill | None, run_dir: Path
) -> list[dict[str, Any]]:
    """One patient's own random stream (seed, patient id): its lesions do not depend on the others'."""
    case = patient.case
    rng = np.random.default_rng([int(seed), case.patient_id])
    painting = paint_patient(patient.hu, patient.scan.labels, patient.scan.spacing, lesion, rng,
                             str(case.segmentation), fill)
    stored = to_stored(patient, painting.hu, painting.changed | painting.tumor, painting.tumor, lesion.contrast_hu)
    labels = np.where(painting.tumor, np.int8(TUMOR_LABEL), patient.scan.labels)
    write_patient(patient, stored, labels, run_dir)
    hu = stored.astype(np.float32) * np.float32(patient.scan.slope) + np.float32(patient.scan.inter)
    return [_manifest_row(patient, painting, number, hu, labels, seed, option) for number in range(len(painting.lesions))]


def _manifest_row(
    patient: SourcePatient, painting: Painting, number: int, hu: np.ndarray, labels: np.ndarray, seed: int, option: str
) -> dict[str, Any]:
    lesion = painting.lesions[number]
    index = patient.file_index(lesion.centre)
    world = patient.affine @ np.array([*index, 1.0])
    around = (labels[lesion.box] == 1) & ~painting.changed[lesion.box]
    surrounding = hu[lesion.box][around]
    return {
        "patient": patient.case.patient_id, "lesion": number, "option": option, "seed": int(seed),
        "centre_i": index[0], "centre_j": index[1], "centre_k": index[2],
        "centre_x_mm": round(float(world[0]), 2), "centre_y_mm": round(float(world[1]), 2),
        "centre_z_mm": round(float(world[2]), 2),
        "diameter_mm": round(lesion.diameter_mm, 2), "volume_ml": round(lesion.volume_ml, 4),
        "lesion_hu": round(float(hu[lesion.box][lesion.mask].mean()), 2),
        "liver_hu": round(float(np.median(surrounding)) if surrounding.size else painting.liver_hu, 2),
    }


def _manifest_text(rows: list[dict[str, Any]]) -> str:
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return text.getvalue()


def _has_tumor(case: Case) -> bool:
    """As prepare_dataset decides it (a patient with a tumor slice): any voxel of label 2. Only the
    segmentation is read; read_scan checks both files when the patient is painted."""
    return bool((np.rint(np.asanyarray(nib.load(str(case.segmentation)).dataobj)) == TUMOR_LABEL).any())


def _check_run_dir(run_dir: Path, root: Path, cases: list[Case]) -> None:
    """Refuse to write into the source folder, or to mix the source's files with the new ones."""
    out = run_dir.resolve()
    source = root.resolve()
    if out == source or source in out.parents:
        _withdraw_own_log(run_dir)
        raise LiverGanError(
            f"hydra.run.dir={run_dir} is inside dataset.root {root}: liver-gan-insert never writes into its "
            "source; choose a run dir outside it"
        )
    inside = [case.volume for case in cases if out in case.volume.resolve().parents]
    if inside:
        raise LiverGanError(
            f"hydra.run.dir={run_dir} holds source files such as {inside[0]}; choose an empty run dir outside dataset.root"
        )


def _withdraw_own_log(run_dir: Path) -> None:
    """Hydra made the run dir and opened this job's log in it before the task could check where it
    is: remove both when they are all it holds, so that a refused run leaves the source as it was."""
    log_names = {Path(handler.baseFilename).name for handler in file_logs_in(run_dir)}
    if not run_dir.is_dir() or {path.name for path in run_dir.iterdir()} - log_names:
        return
    for log_file in close_file_logs_in(run_dir):
        log_file.unlink(missing_ok=True)
    run_dir.rmdir()


def _check_lesion_options(cfg: ProceduralLesionConfig) -> None:
    checks = (
        (1 <= cfg.count_min <= cfg.count_max, f"lesion.count_min={cfg.count_min}, lesion.count_max={cfg.count_max}: "
                                              "use 1 <= count_min <= count_max"),
        (0 < cfg.diameter_mm_min <= cfg.diameter_mm_median <= cfg.diameter_mm_max,
         f"lesion.diameter_mm_min={cfg.diameter_mm_min:g}, diameter_mm_median={cfg.diameter_mm_median:g}, "
         f"diameter_mm_max={cfg.diameter_mm_max:g}: use 0 < min <= median <= max"),
        (cfg.diameter_mm_sigma >= 0, f"lesion.diameter_mm_sigma={cfg.diameter_mm_sigma:g}: use a log-std >= 0"),
        (cfg.edge_mm > 0, f"lesion.edge_mm={cfg.edge_mm:g}: use a soft-edge width > 0 mm, e.g. 2"),
        (cfg.rim_mm > 0, f"lesion.rim_mm={cfg.rim_mm:g}: use a rim depth > 0 mm, e.g. 1.5"),
        (0 <= cfg.elongation < 1, f"lesion.elongation={cfg.elongation:g}: use a fraction in [0, 1), e.g. 0.25"),
        (0 <= cfg.lobulation <= 1, f"lesion.lobulation={cfg.lobulation:g}: use a probability in [0, 1]"),
        (min(cfg.margin_mm, cfg.tumor_margin_mm, cfg.vessel_margin_mm, cfg.mass_effect_mm, cfg.elastic_mm) >= 0,
         "lesion.*_margin_mm, lesion.mass_effect_mm and lesion.elastic_mm must be >= 0 mm"),
    )
    for ok, message in checks:
        if not ok:
            raise LiverGanError(message)


def _same_folder(path: str, root: Path) -> bool:
    return Path(path).expanduser().resolve() == root.resolve()


def _learned_fill(cfg: LearnedLesionConfig) -> Fill:
    """The trained inpainter; imported only here, as lesion=learned is the only user."""
    try:
        from liver_gan.lesions.learned import load_inpainter
    except ModuleNotFoundError as error:
        if error.name != "liver_gan.lesions.learned":
            raise
        raise LiverGanError(
            "lesion=learned needs the inpainting model (liver_gan/lesions/learned.py), which this install lacks; "
            "use lesion=procedural"
        ) from error
    return load_inpainter(cfg.checkpoint, cfg.device)


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    return {key: (value.value if hasattr(value, "value") else value) for key, value in values.items()}
