"""The slice dataset a run trains and evaluates on.

:func:`prepare_dataset` finds the patients under ``dataset.root``, builds every kept slice once
(or reads them from the cache), splits the patients into train and val, and keeps the slices
of ``dataset.subset``. Splitting by patient, never by slice, keeps near-identical neighbouring
slices of one patient out of validation.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import nibabel as nib
import numpy as np
import torch
from omegaconf import MISSING
from omegaconf.errors import MissingMandatoryValue

from liver_gan.data.cache import CacheEntry, SliceTable, cache_key, load_or_build
from liver_gan.data.labels import HEALTHY, SUBSET_CLASSES, TUMOR
from liver_gan.data.layouts import Case, find_cases
from liver_gan.data.masks import ct, encode
from liver_gan.data.nifti import _load as load_checked_header
from liver_gan.data.nifti import read_scan
from liver_gan.data.phantom import write_phantom
from liver_gan.data.schema import Crop, DatasetConfig, DatasetName, Layout, Subset
from liver_gan.data.slicing import ScanSlices, SliceOptions, slice_scan
from liver_gan.data.summary import dataset_summary
from liver_gan.errors import LiverGanError
from liver_gan.memory import require_fits
from liver_gan.progress import progress

log = logging.getLogger(__name__)

# A spawned worker spends seconds importing torch before its first volume (2-5 s on a 2-core
# machine), while a serial build gets through 512x512 int16 .nii.gz at about 100 MB/s
# (BENCHMARKS.md): below this much input a serial build is done before workers would pay off.
PARALLEL_MIN_INPUT_BYTES = 2**30


@dataclass(frozen=True)
class SliceSet:
    """Slices with their class and patient, as tensors ready to move to the training device."""

    # float32 (N, C, R, R), values in [-1, 1]: the CT channel, then with dataset.masks=true the
    # liver and tumor mask channels (liver_gan/data/masks.py)
    images: torch.Tensor
    labels: torch.Tensor  # int64 (N,), HEALTHY / TUMOR
    patient_ids: torch.Tensor  # int64 (N,)
    slice_indices: torch.Tensor | None = None  # int64 (N,), axial index in the canonical volume
    spacing: torch.Tensor | None = None  # float32 (N, 3): mm per pixel (rows, columns), slice thickness

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def of_class(self, label: int) -> SliceSet:
        return self.select(self.labels == label)

    def ct_only(self) -> SliceSet:
        """The same slices without their mask channels (a view, not a copy)."""
        return dataclasses.replace(self, images=ct(self.images))

    def select(self, keep: torch.Tensor) -> SliceSet:
        """The slices where the boolean ``keep`` is true (or at the indices ``keep`` lists)."""
        return SliceSet(
            self.images[keep],
            self.labels[keep],
            self.patient_ids[keep],
            None if self.slice_indices is None else self.slice_indices[keep],
            None if self.spacing is None else self.spacing[keep],
        )


@dataclass(frozen=True)
class PreparedDataset:
    key: str  # the cache key (hex), also used to key reference FID statistics
    resolution: int
    subset: Subset
    train: SliceSet  # filtered to ``subset`` (labels kept)
    val: SliceSet
    summary: dict[str, Any]  # the dataset_summary.json structure (counts over both classes)

    def ct_only(self) -> PreparedDataset:
        """The same dataset without mask channels: what Inception and the image metrics compare."""
        return dataclasses.replace(self, train=self.train.ct_only(), val=self.val.ct_only())


def prepare_dataset(cfg: DatasetConfig, seed: int) -> PreparedDataset:
    _check_options(cfg)
    entry = _cached_slices(cfg, dataset_root(cfg))
    per_patient = entry.meta["per_patient"]
    has_tumor = {int(patient): stats["tumor_slices"] > 0 for patient, stats in per_patient.items()}
    train_ids, val_ids = split_patients(
        has_tumor, cfg.val_fraction, seed, val_patients=cfg.val_patients, test_patients=cfg.test_patients
    )
    subset = Subset(cfg.subset)
    train = _slice_set(entry.slices, train_ids, subset)
    val = _slice_set(entry.slices, val_ids, subset)
    summary = dataset_summary(per_patient, train_ids, val_ids)
    _check_not_empty(train, val, subset, summary)
    return PreparedDataset(entry.key, int(cfg.resolution), subset, train, val, summary)


def dataset_root(cfg: DatasetConfig) -> Path:
    """The folder to read; for the phantom, it is written there first (once)."""
    try:
        root = cfg.root
    except MissingMandatoryValue:
        root = MISSING
    if root == MISSING:
        raise LiverGanError("dataset.root is not set: pass dataset.root=/path/to/the/data")
    if DatasetName(cfg.name) is DatasetName.phantom:
        return write_phantom(Path(root).expanduser(), cfg.phantom)
    return Path(root).expanduser()


def _check_options(cfg: DatasetConfig) -> None:
    """A bad value stops before any work, naming its config key."""
    _require(cfg.resolution >= 1, f"dataset.resolution={cfg.resolution}: use a positive number of pixels, e.g. 64")
    _require(cfg.window.width > 0, f"dataset.window.width={cfg.window.width}: use a positive HU width, e.g. 400")
    _require(cfg.crop_margin >= 0, f"dataset.crop_margin={cfg.crop_margin}: use a fraction >= 0, e.g. 0.15")
    _require(
        0 <= cfg.crop_min_fraction <= 1,
        f"dataset.crop_min_fraction={cfg.crop_min_fraction}: use a fraction of the slice in [0, 1], e.g. 0.35",
    )
    _require(0 <= cfg.val_fraction < 1, f"dataset.val_fraction={cfg.val_fraction}: use a fraction in [0, 1), e.g. 0.1")


def dataset_cache_key(cfg: DatasetConfig, root: Path) -> str:
    """The cache key of the slices of ``root`` with ``cfg``'s options (nothing is read but file stats)."""
    return _keyed_cases(cfg, root)[0]


def _keyed_cases(cfg: DatasetConfig, root: Path) -> tuple[str, list[Case], dict[str, Any]]:
    layout, options = Layout(cfg.layout), slice_options(cfg)
    cases = find_cases(root, layout, cfg.skip_bad)
    inputs = [path for case in cases for path in (case.volume, case.segmentation)]
    key_options = {**asdict(options), "crop": options.crop.value, "layout": layout.value}
    return cache_key(key_options, root, inputs), cases, key_options


def _cached_slices(cfg: DatasetConfig, root: Path) -> CacheEntry:
    """Every kept slice of every patient under ``root``: from the cache, or built now."""
    key, cases, key_options = _keyed_cases(cfg, root)
    options = slice_options(cfg)

    def build() -> tuple[SliceTable, dict[str, Any]]:
        _require_cache_fits(cases, options.resolution)
        table, meta = build_slice_table(cases, options, cfg.num_workers, cfg.skip_bad)
        return table, {**meta, "root": str(root.resolve()), "options": key_options}

    entry = load_or_build(Path(cfg.cache_dir), key, build)
    _report_skipped(entry.meta["skipped"], cfg.skip_bad)
    return entry


def _require_cache_fits(cases: Sequence[Case], resolution: int) -> None:
    """Refuse a slice cache larger than the memory available, before any volume is read: every
    axial slice of every volume (from the headers; only the liver's are kept, so this is an upper
    bound) at ``resolution`` squared float32 pixels, as training holds them."""
    slices = sum(_axial_slices(case) for case in cases)
    require_fits(
        slices * resolution**2 * 4,
        f"dataset.resolution={resolution}: the slice cache of up to {slices} slices of {resolution}x{resolution}",
        "lower dataset.resolution (e.g. 64)",
    )


def _axial_slices(case: Case) -> int:
    """The number of axial slices in ``case``'s volume, from its header (checked as the reader checks
    it, so a header claiming more voxels than its file holds counts nothing); 0 for a file that the
    slicing will report, or skip with ``dataset.skip_bad``."""
    try:
        image = load_checked_header(case.volume)
    except LiverGanError:
        return 0
    axial = np.flatnonzero(nib.io_orientation(image.affine)[:, 0] == 2)  # the axis that runs inferior-superior
    return int(image.shape[axial[0]]) if len(axial) else 0


def slice_options(cfg: DatasetConfig) -> SliceOptions:
    return SliceOptions(
        resolution=int(cfg.resolution),
        window_level=float(cfg.window.level),
        window_width=float(cfg.window.width),
        crop=Crop(cfg.crop),
        crop_margin=float(cfg.crop_margin),
        crop_min_fraction=float(cfg.crop_min_fraction),
        masks=bool(cfg.masks),
    )


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise LiverGanError(message)


def build_slice_table(
    cases: Sequence[Case], options: SliceOptions, num_workers: int, skip_bad: bool
) -> tuple[SliceTable, dict[str, Any]]:
    """Slice every case (in parallel over volumes) into one table, plus the cache's meta fields."""
    sliced: list[tuple[int, ScanSlices]] = []
    skipped: dict[str, str] = {}
    outcomes = zip(cases, _slice_cases(cases, options, num_workers))
    for case, outcome in progress(outcomes, "slicing volumes", len(cases), "volumes"):
        if isinstance(outcome, LiverGanError):
            if not skip_bad:
                raise LiverGanError(f"{outcome} (set dataset.skip_bad=true to leave patient {case.patient_id} out)")
            skipped[str(case.patient_id)] = str(outcome)
        else:
            sliced.append((case.patient_id, outcome))
    if not sliced:
        raise LiverGanError(f"every patient was unreadable, e.g. {next(iter(skipped.values()))}")
    per_patient = {
        str(patient): {
            "slices": scan.num_slices,
            "liver_slices": len(scan.tumor),
            "tumor_slices": int(np.count_nonzero(scan.tumor)),
        }
        for patient, scan in sliced
    }
    return _table(sliced), {"per_patient": per_patient, "skipped": skipped}


def _slice_cases(
    cases: Sequence[Case], options: SliceOptions, num_workers: int
) -> Iterator[ScanSlices | LiverGanError]:
    """Outcomes in case order; with several workers, each process holds one volume at a time."""
    work = functools.partial(_slice_case, options=options)
    if num_workers <= 1 or len(cases) <= 1 or _input_bytes(cases) < PARALLEL_MIN_INPUT_BYTES:
        yield from map(work, cases)
        return
    pool = ProcessPoolExecutor(
        max_workers=min(num_workers, len(cases)),
        mp_context=multiprocessing.get_context("spawn"),
        initializer=torch.set_num_threads,  # one thread each: the workers already fill the cores
        initargs=(1,),
    )
    try:
        yield from pool.map(work, cases)
    finally:
        pool.shutdown(cancel_futures=True)


def _input_bytes(cases: Sequence[Case]) -> int:
    return sum(path.stat().st_size for case in cases for path in (case.volume, case.segmentation))


def _slice_case(case: Case, options: SliceOptions) -> ScanSlices | LiverGanError:
    """A bad file is returned, not raised, so the caller decides between failing and skipping."""
    try:
        return slice_scan(read_scan(case.volume, case.segmentation), options)
    except LiverGanError as error:
        return error


def _table(sliced: Sequence[tuple[int, ScanSlices]]) -> SliceTable:
    return SliceTable(
        images=np.concatenate([scan.images for _, scan in sliced]),
        labels=np.concatenate([np.where(scan.tumor, TUMOR, HEALTHY).astype(np.int8) for _, scan in sliced]),
        patient_ids=np.concatenate([np.full(len(scan.tumor), patient, np.int32) for patient, scan in sliced]),
        slice_indices=np.concatenate([scan.slice_indices for _, scan in sliced]),
        spacing=np.concatenate([scan.spacing for _, scan in sliced]),
        label_maps=None if sliced[0][1].label_maps is None else np.concatenate([scan.label_maps for _, scan in sliced]),
    )


def _report_skipped(skipped: Mapping[str, str], skip_bad: bool) -> None:
    """Skipped patients are recorded in the cache entry, so a later run still hears about them."""
    for patient, problem in skipped.items():
        if not skip_bad:
            raise LiverGanError(f"{problem} (set dataset.skip_bad=true to leave patient {patient} out)")
        log.warning("skipping patient %s (dataset.skip_bad=true): %s", patient, problem)


def split_patients(
    has_tumor: Mapping[int, bool],
    val_fraction: float,
    seed: int,
    val_patients: Sequence[int] | None = None,
    test_patients: Sequence[int] | None = None,
) -> tuple[list[int], list[int]]:
    """Patients -> (train ids, val ids), the same for the same seed; ``test_patients`` are in neither.

    ``val_patients`` fixes the validation patients. Otherwise ``round(val_fraction * patients)``
    of the patients left after the test patients go to val (at least one once there are two
    patients, never all), drawn from the tumor-bearing and the tumor-free patients in
    proportion, so that a small dataset still validates on both classes.
    """
    test = _known_patients(test_patients, has_tumor, "dataset.test_patients")
    held = _known_patients(val_patients, has_tumor, "dataset.val_patients")
    if held & test:
        raise LiverGanError(
            f"dataset.val_patients and dataset.test_patients both hold patients {sorted(held & test)}; "
            "give each patient to one of them"
        )
    patients = sorted(p for p in has_tumor if p not in test)
    if val_patients is not None:
        return [p for p in patients if p not in held], sorted(held)
    strata = [[p for p in patients if has_tumor[p]], [p for p in patients if not has_tumor[p]]]
    quotas = _proportional_quotas(_num_val(len(patients), val_fraction), [len(stratum) for stratum in strata])
    rng = np.random.default_rng(seed)
    val = sorted(int(p) for stratum, quota in zip(strata, quotas) for p in rng.permutation(stratum)[:quota])
    return [p for p in patients if p not in val], val


def _known_patients(ids: Sequence[int] | None, has_tumor: Mapping[int, bool], option: str) -> set[int]:
    """The ids of ``option``, each of which must be a patient of the dataset."""
    chosen = {int(p) for p in ids or ()}
    unknown = sorted(chosen - set(has_tumor))
    if unknown:
        known = sorted(has_tumor)
        raise LiverGanError(
            f"{option}={sorted(chosen)}: no patient {', '.join(map(str, unknown))} in dataset.root "
            f"(its patients are {', '.join(map(str, known[:20]))}{', ...' if len(known) > 20 else ''}); "
            "use the ids of its patients"
        )
    return chosen


def _num_val(num_patients: int, val_fraction: float) -> int:
    if val_fraction == 0 or num_patients < 2:
        return 0
    return min(max(1, round(val_fraction * num_patients)), num_patients - 1)


def _proportional_quotas(total: int, sizes: Sequence[int]) -> list[int]:
    """Split ``total`` over groups of ``sizes`` in proportion (largest remainder; ties to the first)."""
    shares = [total * size / max(sum(sizes), 1) for size in sizes]
    quotas = [math.floor(share) for share in shares]
    by_remainder = sorted(range(len(sizes)), key=lambda group: quotas[group] - shares[group])
    for group in by_remainder[: total - sum(quotas)]:
        quotas[group] += 1
    return quotas


def _slice_set(table: SliceTable, patients: list[int], subset: Subset) -> SliceSet:
    keep = np.isin(table.patient_ids, patients) & np.isin(table.labels, SUBSET_CLASSES[subset])
    images = torch.from_numpy(table.images[keep].astype(np.float32)).unsqueeze(1)
    if table.label_maps is not None:
        images = torch.cat([images, encode(torch.from_numpy(table.label_maps[keep]))], dim=1)
    return SliceSet(
        images=images,
        labels=torch.from_numpy(table.labels[keep].astype(np.int64)),
        patient_ids=torch.from_numpy(table.patient_ids[keep].astype(np.int64)),
        slice_indices=torch.from_numpy(table.slice_indices[keep].astype(np.int64)),
        spacing=torch.from_numpy(table.spacing[keep].astype(np.float32)),
    )


def _check_not_empty(train: SliceSet, val: SliceSet, subset: Subset, summary: Mapping[str, Any]) -> None:
    counts = summary["counts"]
    if len(train) == 0:
        raise LiverGanError(
            f"dataset.subset={subset.value} leaves no training slices (train has {counts['train']}); "
            "choose another dataset.subset or check the segmentations"
        )
    if len(val) == 0 and summary["patients"]["val"]:
        log.warning("dataset.subset=%s has no validation slices (val has %s)", subset.value, counts["val"])
