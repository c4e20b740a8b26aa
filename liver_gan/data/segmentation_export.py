"""Slices with their label maps as NIfTI files that segmentation tools read: one 2D case per slice.

- ``nifti``: ``<stack>/<index>.nii.gz`` (HU), with ``<stack>/<index>_seg.nii.gz`` (labels) when
  the slices carry masks;
- ``nnunet``: an nnU-Net v2 raw dataset folder, ``imagesTr/<case>_0000.nii.gz``,
  ``labelsTr/<case>.nii.gz`` and ``dataset.json`` (one channel named CT, so nnU-Net normalises it
  as CT; labels background 0, liver 1, tumor 2), with real slices also ``splits_final.json``
  (synthetic cases in training folds only); :func:`export_nnunet_volumes` does the same for whole
  volumes (an insert run and its real source);
- ``lits``: ``volume-N.nii.gz`` and ``segmentation-N.nii.gz`` pairs, as LiTS ships them, which
  ``liver-gan-prepare dataset=lits`` reads back.

Each slice is a volume of one axial slice, stored in RAS+ so that liver-gan's reader (and any
viewer) shows it as it was generated: anterior up, the patient's right on the image's left.
Intensities go back from [-1, 1] to Hounsfield units inside the window the model was trained on,
``level + x * width / 2``, rounded to whole HU as int16 as scanners store them.  Values outside
the window were clipped before training and cannot be recovered: air, bone and contrast beyond it
come out at the window's edges (-150 and 250 HU for the default window).  The voxel size is the
source data's: the median pixel spacing of the training slices (after their crop and resize)
and their median slice thickness.

Every folder is written whole or not at all, and an existing one is never replaced.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Mapping, Sequence

import nibabel as nib
import numpy as np
import torch
from torch import Tensor

from liver_gan.atomic import write_export
from liver_gan.data.dataset import SliceSet
from liver_gan.data.layouts import Case
from liver_gan.data.masks import ct, has_masks, label_maps
from liver_gan.data.nifti import write_nifti
from liver_gan.data.schema import HUWindow
from liver_gan.errors import LiverGanError

NIFTI_ENDING = ".nii.gz"
NNUNET_LABELS = {"background": 0, "liver": 1, "tumor": 2}
NNUNET_SPLITS_FILE = "splits_final.json"
NNUNET_FOLDS = 5
# nnU-Net v2 shuffles its default folds with KFold(n_splits=5, shuffle=True, random_state=12345).
NNUNET_SPLIT_SEED = 12345

# (stack name -> (N, C, R, R) slices in [-1, 1]), written in this order.
Stacks = Mapping[str, Tensor]
Spacing = tuple[float, float, float]  # mm: rows, columns, slice thickness


def source_spacing(slices: SliceSet) -> Spacing:
    """The median pixel spacing (rows, columns) and slice thickness of the training slices."""
    if slices.spacing is None or len(slices.spacing) == 0:
        raise LiverGanError("the run's dataset has no slices to take the voxel spacing from")
    rows, columns, thickness = slices.spacing.median(dim=0).values.tolist()
    return rows, columns, thickness


def to_hu(images: Tensor, window: HUWindow) -> np.ndarray:
    """CT channels in [-1, 1] -> int16 Hounsfield units inside ``window`` (N, R, R)."""
    hu = ct(images)[:, 0].double().clamp(-1, 1) * (window.width / 2) + window.level
    return torch.round(hu).to(torch.int16).numpy()


def slice_affine(spacing: Spacing) -> np.ndarray:
    """A RAS+ affine for a one-slice volume whose x runs along the image's columns and y along its rows."""
    rows, columns, thickness = spacing
    return np.diag([columns, rows, thickness, 1.0])


def as_volume(image: np.ndarray) -> np.ndarray:
    """A radiological (rows, columns) image -> the RAS+ (X, Y, 1) volume that reads back as it
    (the inverse of ``liver_gan.data.nifti.to_radiological``)."""
    return np.ascontiguousarray(image[::-1, ::-1].T)[:, :, None]


def write_case(image_path: Path, label_path: Path | None, hu: np.ndarray, labels: np.ndarray | None, spacing: Spacing) -> None:
    affine = slice_affine(spacing)
    write_nifti(image_path, as_volume(hu), affine)
    if label_path is not None:
        write_nifti(label_path, as_volume(labels.astype(np.uint8)), affine)


def _cases(stacks: Stacks, window: HUWindow) -> list[tuple[str, int, np.ndarray, np.ndarray | None]]:
    """(stack name, index in it, HU image, label map or None) of every slice, stack by stack."""
    cases = []
    for name, images in stacks.items():
        hu = to_hu(images, window)
        maps = label_maps(images).numpy() if has_masks(images) else [None] * len(images)
        cases += [(name, index, image, labels) for index, (image, labels) in enumerate(zip(hu, maps))]
    return cases


def _write_new_folder(directory: Path, write: Callable[[Path], None]) -> Path:
    """Write ``directory`` whole, refusing one that exists: an export never replaces a user's files."""
    directory = Path(directory)

    def write_into(tmp: Path) -> None:
        (tmp / directory.name).mkdir()
        write(tmp / directory.name)

    write_export(directory.parent, write_into)
    return directory


def _require_masks(stacks: Stacks, export_format: str) -> None:
    if not all(has_masks(images) for images in stacks.values()):
        raise LiverGanError(
            f"format={export_format} writes label maps, but this model generates none: "
            "train it with dataset.masks=true, or use format=nifti, png or npy"
        )


def export_nifti(stacks: Stacks, directory: Path, window: HUWindow, spacing: Spacing) -> Path:
    """``directory/<stack>/<index>.nii.gz``, and ``<index>_seg.nii.gz`` beside it with masks."""

    def write(tmp: Path) -> None:
        for name, index, hu, labels in _cases(stacks, window):
            label_path = None if labels is None else tmp / name / f"{index:05d}_seg{NIFTI_ENDING}"
            write_case(tmp / name / f"{index:05d}{NIFTI_ENDING}", label_path, hu, labels, spacing)

    return _write_new_folder(directory, write)


def nnunet_splits(
    real_cases: Mapping[str, int], synthetic_cases: Mapping[str, int | None], num_folds: int = NNUNET_FOLDS
) -> list[dict[str, list[str]]]:
    """nnU-Net v2's ``splits_final.json``: ``num_folds`` folds of the real cases by patient (case ->
    patient id).  A synthetic case (case -> its source patient, or None) is only ever in training
    lists: of every fold, or with a source patient of the folds that do not validate on that patient,
    since a tumor painted into a patient's scan would carry the patient into training."""
    patients = sorted(set(real_cases.values()))
    if len(patients) < num_folds:
        raise LiverGanError(
            f"nnU-Net's {num_folds} folds by patient need at least {num_folds} real patients, got {len(patients)}"
        )
    order = np.random.default_rng(NNUNET_SPLIT_SEED).permutation(patients).tolist()
    folds = []
    for fold in range(num_folds):
        held_out = set(order[fold::num_folds])
        val = sorted(case for case, patient in real_cases.items() if patient in held_out)
        train = sorted(case for case, patient in real_cases.items() if patient not in held_out)
        train += sorted(case for case, patient in synthetic_cases.items() if patient not in held_out)
        folds.append({"train": train, "val": val})
    return folds


def nnunet_dataset_json(name: str, description: str, num_cases: int) -> dict:
    """dataset.json: one channel named CT (so nnU-Net normalises it as CT), background/liver/tumor."""
    return {
        "name": name,
        "description": description,
        "channel_names": {"0": "CT"},
        "labels": NNUNET_LABELS,
        "numTraining": num_cases,
        "file_ending": NIFTI_ENDING,
    }


def export_nnunet(
    stacks: Stacks,
    directory: Path,
    window: HUWindow,
    spacing: Spacing,
    real: SliceSet | None = None,
    validation: SliceSet | None = None,
) -> Path:
    """An nnU-Net v2 raw dataset folder (``directory`` should be named ``DatasetXXX_Name``).

    With ``real`` slices (with masks) they are exported too, as ``real_<patient>_<slice>``, and
    ``splits_final.json`` holds nnU-Net's 5 folds of them by patient, with every synthetic case in
    the training lists only (``nnUNetv2_plan_and_preprocess`` copies it to the preprocessed folder,
    where training reads it).

    With ``validation`` slices instead (a synthetic-only export: liver-gan-sample), they are
    exported as ``real_<patient>_<slice>`` and ``splits_final.json`` holds one fold that trains on
    the synthetic cases only and validates on them, as nnU-Net needs real validation cases to
    report how a segmenter trained on synthetic data does (train fold 0, not ``all``)."""
    _require_masks(stacks, "nnunet")
    if real is not None and validation is not None:
        raise ValueError("export_nnunet takes real slices (5 folds) or validation slices (1 fold), not both")
    given_real = real if real is not None else validation
    if given_real is not None:
        _require_masks({"real": given_real.images}, "nnunet")

    def write(tmp: Path) -> None:
        cases = {f"{name}_{index:05d}": (hu, labels) for name, index, hu, labels in _cases(stacks, window)}
        synthetic = dict.fromkeys(cases)  # generated from noise: no source patient
        real_cases = {}
        if given_real is not None:
            numbers = given_real.slice_indices if given_real.slice_indices is not None else torch.arange(len(given_real))
            real_slices = zip(_cases({"real": given_real.images}, window), given_real.patient_ids.tolist(), numbers.tolist())
            for (_, _, hu, labels), patient, number in real_slices:
                real_cases[f"real_{patient:04d}_{number:04d}"] = patient
                cases[f"real_{patient:04d}_{number:04d}"] = (hu, labels)
        for case, (hu, labels) in cases.items():
            write_case(tmp / "imagesTr" / f"{case}_0000{NIFTI_ENDING}", tmp / "labelsTr" / f"{case}{NIFTI_ENDING}", hu, labels, spacing)
        description = "synthetic liver CT slices with liver and tumor labels, generated by liver-gan"
        _write_json(tmp / "dataset.json", nnunet_dataset_json(directory.name, description, len(cases)))
        if real is not None:
            _write_json(tmp / NNUNET_SPLITS_FILE, nnunet_splits(real_cases, synthetic))
        if validation is not None:
            _write_json(tmp / NNUNET_SPLITS_FILE, [{"train": sorted(synthetic), "val": sorted(real_cases)}])

    return _write_new_folder(directory, write)


def export_nnunet_volumes(real: Sequence[Case], inserted: Sequence[Case], directory: Path) -> Path:
    """An nnU-Net v2 raw dataset of whole volumes: the real cases as ``real_<patient>`` and the
    cases with inserted tumors as ``inserted_<patient>``, each pair rewritten as it was read (same
    voxels, affine and scaling), and ``splits_final.json`` with 5 folds by patient, inserted cases
    in training lists only, never in a fold that validates on their source patient."""
    directory = Path(directory)

    def write(tmp: Path) -> None:
        named = [(f"real_{case.patient_id:04d}", case) for case in real]
        named += [(f"inserted_{case.patient_id:04d}", case) for case in inserted]
        for name, case in named:
            _copy_nifti(case.volume, tmp / "imagesTr" / f"{name}_0000{NIFTI_ENDING}")
            _copy_nifti(case.segmentation, tmp / "labelsTr" / f"{name}{NIFTI_ENDING}")
        description = "real liver CT volumes and the same patients' volumes with tumors inserted by liver-gan-insert"
        _write_json(tmp / "dataset.json", nnunet_dataset_json(directory.name, description, len(named)))
        splits = nnunet_splits(
            {name: case.patient_id for name, case in named[: len(real)]},
            {name: case.patient_id for name, case in named[len(real) :]},
        )
        _write_json(tmp / NNUNET_SPLITS_FILE, splits)

    return _write_new_folder(directory, write)


def _copy_nifti(source: Path, target: Path) -> None:
    """``source`` as a gzipped NIfTI, its array and header unchanged (nibabel reads .nii and .nii.gz)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    image = nib.load(str(source))
    nib.save(nib.Nifti1Image(np.asanyarray(image.dataobj), image.affine, image.header), str(target))


def _write_json(path: Path, data: object) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


def export_lits(stacks: Stacks, directory: Path, window: HUWindow, spacing: Spacing) -> Path:
    """``volume-N.nii.gz`` / ``segmentation-N.nii.gz`` pairs, numbered from 0 over every stack."""
    _require_masks(stacks, "lits")

    def write(tmp: Path) -> None:
        for number, (_, _, hu, labels) in enumerate(_cases(stacks, window)):
            write_case(tmp / f"volume-{number}{NIFTI_ENDING}", tmp / f"segmentation-{number}{NIFTI_ENDING}", hu, labels, spacing)

    return _write_new_folder(directory, write)


EXPORTS = {"nifti": export_nifti, "nnunet": export_nnunet, "lits": export_lits}
