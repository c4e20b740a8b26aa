"""Slices of an insert run (``liver-gan-insert``): real volumes with painted tumors, as arms of the
downstream utility and as the inserted side of the realism checks.

An insert run dir ``R`` holds ``.hydra/config.yaml`` (its ``dataset`` node and ``seed``: the real
data and the patient split it inserted into) and a ``volume-N``/``segmentation-N`` pair per
training patient N that got lesions, labelled 2 where tumor was painted.  ``R`` is untrusted input:
only the ``dataset`` and ``seed`` of its record are read, validated against ``DatasetConfig``.

The arms (every one tested on the real validation patients):

- real only: the real training slices;
- real + inserted at each ratio: the real training slices plus ``ratio`` times as many inserted
  tumor slices, drawn from the pool with the seed;
- label-free (Hu et al., CVPR 2023): the real *healthy* slices of the training patients plus the
  inserted tumor slices whose source slice had no real tumor, so no real tumor label is used.

An inserted tumor slice is a slice of an inserted volume whose tumor mask, at the dataset's
resolution, differs from its source slice's: slices the painter left alone would only repeat real
ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from torch import Tensor

from liver_gan.data.dataset import PreparedDataset, SliceSet, dataset_root, prepare_dataset
from liver_gan.data.labels import HEALTHY, TUMOR
from liver_gan.data.layouts import find_cases
from liver_gan.data.masks import label_maps
from liver_gan.data.schema import DatasetConfig, DatasetName, Layout, Subset
from liver_gan.data.segmentation_export import export_nnunet_volumes
from liver_gan.downstream.arms import Arm, ArmSet, ArmTrainingSet, Study
from liver_gan.errors import LiverGanError

RECORD = Path(".hydra") / "config.yaml"
LABEL_FREE = "label_free"
# The options that decide how a volume becomes slices: the inserted volumes are cut like the real ones.
SLICE_KEYS = ("resolution", "window", "crop", "crop_margin", "crop_min_fraction", "cache_dir", "num_workers")


@dataclass(frozen=True)
class InsertedData:
    run_dir: Path
    real: PreparedDataset  # the run's real data and split, over both classes, with masks
    tumor: SliceSet  # inserted tumor slices (all from training patients)
    label_free: SliceSet  # those of them whose source slice had no real tumor
    patients: list[int]  # the patients that got lesions
    dataset_name: str  # the real data's dataset.name
    seed: int  # the record's seed: the patient split's


def insert_record(run_dir: Path) -> tuple[DictConfig, int]:
    """The validated ``dataset`` node and ``seed`` of an insert run's Hydra record."""
    record_path = run_dir / RECORD
    if not record_path.is_file():
        raise LiverGanError(
            f"inserted={run_dir}: no {RECORD} there; give the run dir of a liver-gan-insert run (it holds the real data's record)"
        )
    try:
        record = OmegaConf.load(record_path)
        dataset = OmegaConf.merge(OmegaConf.structured(DatasetConfig), record.get("dataset", {}))
        seed = record.get("seed")
        OmegaConf.to_container(dataset, resolve=True, throw_on_missing=True)
    except (OmegaConfBaseException, ValueError) as error:
        problem = str(error).splitlines()[0]
        raise LiverGanError(f"{record_path}: its dataset node is not a valid DatasetConfig ({problem})") from None
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise LiverGanError(f"{record_path}: seed={seed!r} must be an integer (the patient split's seed)")
    return dataset, seed


def load_inserted(run_dir: str | Path, **real_overrides: Any) -> InsertedData:
    """The real dataset of an insert run's record (with ``real_overrides``, e.g. ``crop="liver"``)
    and the inserted slices, cut with the same slice options and with their masks."""
    run_dir = Path(run_dir).expanduser()
    record, seed = insert_record(run_dir)
    real_cfg = OmegaConf.merge(record, {"subset": Subset.all.value, "masks": True}, real_overrides)
    real = prepare_dataset(real_cfg, seed)
    patients = check_training_patients(run_dir, real.summary["patients"]["train"])
    inserted_cfg = OmegaConf.merge(
        OmegaConf.structured(DatasetConfig),
        {key: real_cfg[key] for key in SLICE_KEYS},
        {"name": "lits", "layout": Layout.lits.value, "root": str(run_dir), "subset": Subset.all.value,
         "masks": True, "val_fraction": 0.0},
    )
    inserted = prepare_dataset(inserted_cfg, seed).train
    tumor, source_healthy = painted_slices(inserted, real.train, run_dir)
    name = DatasetName(real_cfg.name).value
    return InsertedData(run_dir, real, tumor, tumor.select(source_healthy), patients, name, seed)


def check_training_patients(run_dir: Path, train_patients: Sequence[int]) -> list[int]:
    """The inserted patients' ids; each must be a training patient of the record's split, since an
    inserted case of a held-out patient would carry that patient into training."""
    cases = find_cases(run_dir, Layout.lits, False)
    for case in cases:
        if case.patient_id not in train_patients:
            raise LiverGanError(
                f"{case.volume}: patient {case.patient_id} is not a training patient of the run's split "
                f"(training: {sorted(train_patients)}); remove it, or re-run liver-gan-insert with this dataset and seed"
            )
    return sorted(case.patient_id for case in cases)


def painted_slices(inserted: SliceSet, real_train: SliceSet, run_dir: Path) -> tuple[SliceSet, Tensor]:
    """The inserted slices whose tumor mask differs from their source slice's, and for each whether
    that source slice was healthy."""
    source_index = {
        (int(patient), int(index)): row
        for row, (patient, index) in enumerate(zip(real_train.patient_ids, real_train.slice_indices))
    }
    rows = []
    for patient, index in zip(inserted.patient_ids.tolist(), inserted.slice_indices.tolist()):
        if (patient, index) not in source_index:
            raise LiverGanError(
                f"{run_dir}/volume-{patient}.nii.gz: its liver slice {index} has no counterpart in the real volume; "
                "an insert run keeps its source's shape and liver mask"
            )
        rows.append(source_index[(patient, index)])
    source = torch.tensor(rows, dtype=torch.long)
    inserted_tumor = label_maps(inserted.images) == 2
    source_tumor = label_maps(real_train.images[source]) == 2
    painted = (inserted_tumor != source_tumor).flatten(1).any(dim=1) & (inserted.labels == TUMOR)
    return inserted.select(painted), real_train.labels[source][painted] == HEALTHY


def inserted_arms(ratios: Sequence[float]) -> list[Arm]:
    if not ratios or any(ratio <= 0 for ratio in ratios) or len(set(ratios)) != len(ratios):
        raise LiverGanError(f"ratios={list(ratios)} must be distinct positive fractions, e.g. [0.5, 1.0]")
    mixed = [Arm(f"real_plus_{ratio * 100:g}pct_inserted", f"real + {ratio * 100:g}% inserted", True, ratio) for ratio in ratios]
    return [Arm("real_only", "real only", True, 0.0), *mixed, Arm(LABEL_FREE, "label-free", False, 0.0)]


def draw(pool: SliceSet, count: int, seed: int) -> SliceSet:
    """``count`` slices of ``pool``, reproducibly from ``seed``: without repeats while the pool lasts."""
    if count == 0:
        return pool.select(torch.empty(0, dtype=torch.long))
    if len(pool) == 0:
        raise LiverGanError("the insert run has no inserted tumor slices at this resolution; insert larger or more lesions")
    rng = torch.Generator().manual_seed(seed)
    rounds = math.ceil(count / len(pool))
    return pool.select(torch.cat([torch.randperm(len(pool), generator=rng) for _ in range(rounds)])[:count])


def inserted_training_set(data: InsertedData) -> ArmTrainingSet:
    """Each arm's slices: see the module's docstring."""
    train = data.real.train

    def training_set(arm: Arm, seed: int) -> ArmSet:
        if arm.name == LABEL_FREE:
            healthy = train.of_class(HEALTHY)
            if len(data.label_free) == 0:
                raise LiverGanError(
                    f"{data.run_dir}: no inserted tumor slice has a healthy source slice, so the label-free arm has no tumors"
                )
            images = torch.cat([healthy.images, data.label_free.images])
            labels = torch.cat([healthy.labels, data.label_free.labels])
            return ArmSet(images, labels, len(healthy), len(data.label_free))
        extra = draw(data.tumor, round(arm.synthetic_ratio * len(train)), seed)
        return ArmSet(torch.cat([train.images, extra.images]), torch.cat([train.labels, extra.labels]), len(train), len(extra))

    return training_set


def inserted_study(cfg: DictConfig) -> Study:
    """The utility experiment on an insert run (``inserted=R``)."""
    if cfg.generator is not None or cfg.tumor_generator is not None or cfg.healthy_generator is not None:
        raise LiverGanError("give either inserted= (an insert run) or generators, not both")
    data = load_inserted(cfg.inserted)
    source = {
        "inserted": {
            "run_dir": str(data.run_dir),
            "patients": data.patients,
            "tumor_slices": len(data.tumor),
            "label_free_tumor_slices": len(data.label_free),
        }
    }
    arms = inserted_arms(list(cfg.ratios))
    return Study(data.real, arms, inserted_training_set(data), source, data.dataset_name, data.seed, [])


def export_insert_run_nnunet(run_dir: str | Path, directory: str | Path) -> Path:
    """An nnU-Net v2 raw dataset of an insert run's real patients (its record's train and val
    split) and its volumes with inserted tumors, with ``splits_final.json`` by patient."""
    run_dir = Path(run_dir).expanduser()
    record, seed = insert_record(run_dir)
    real_cfg = OmegaConf.merge(record, {"subset": Subset.all.value})
    patients = prepare_dataset(real_cfg, seed).summary["patients"]
    check_training_patients(run_dir, patients["train"])
    kept = set(patients["train"]) | set(patients["val"])
    real = [case for case in find_cases(dataset_root(real_cfg), Layout(real_cfg.layout), real_cfg.skip_bad) if case.patient_id in kept]
    return export_nnunet_volumes(real, find_cases(run_dir, Layout.lits, False), Path(directory).expanduser())
