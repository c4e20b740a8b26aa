"""Export the prepared slices in the thesis's ImageFolder layout, for use in other tools:
``train|val/healthy|tumor/p<patient>_s<slice>.png``, 8-bit grayscale."""

from __future__ import annotations

from pathlib import Path

from liver_gan.atomic import write_export
from liver_gan.data.dataset import PreparedDataset, SliceSet
from liver_gan.data.labels import CLASS_NAMES, SUBSET_CLASSES
from liver_gan.images import save_png, to_uint8


def export_imagefolder(dataset: PreparedDataset, directory: Path, overwrite: bool = False) -> Path:
    """Write ``directory`` whole or not at all; one class folder per class in ``dataset.subset``.

    An existing ``directory`` is refused; ``overwrite`` replaces it only if it holds nothing but
    an earlier export's files (:func:`liver_gan.atomic.write_export`).
    """
    directory = Path(directory)

    def write(tmp: Path) -> None:
        for split, slices in (("train", dataset.train), ("val", dataset.val)):
            for label in SUBSET_CLASSES[dataset.subset]:
                (tmp / directory.name / split / CLASS_NAMES[label]).mkdir(parents=True)
            _write_pngs(slices, tmp / directory.name / split)

    write_export(directory.parent, write, overwrite, option="hydra.run.dir=")
    return directory


def exported_counts(dataset: PreparedDataset) -> dict[str, int]:
    """``split/class`` -> how many PNGs :func:`export_imagefolder` writes there: the slices of
    ``dataset.subset``, which may be fewer than the summary counts over both classes."""
    return {
        f"{split}/{CLASS_NAMES[label]}": int((slices.labels == label).sum())
        for split, slices in (("train", dataset.train), ("val", dataset.val))
        for label in SUBSET_CLASSES[dataset.subset]
    }


def _write_pngs(slices: SliceSet, directory: Path) -> None:
    pixels = to_uint8(slices.images[:, 0])
    rows = zip(pixels, slices.labels.tolist(), slices.patient_ids.tolist(), slices.slice_indices.tolist())
    for image, label, patient, slice_index in rows:
        save_png(image, directory / CLASS_NAMES[label] / f"p{patient}_s{slice_index}.png")
