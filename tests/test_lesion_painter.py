"""The lesion painter (liver_gan/lesions/) on tiny in-memory livers: where lesions go, what changes,
3-D coherence, seeds, fit_from, bad input, and the phantom it also draws."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from lesion_factory import LIVER_HU, SPACING, liver_volume

from liver_gan.data.nifti import write_nifti
from liver_gan.data.phantom import synthesize_scan
from liver_gan.data.schema import Layout, PhantomConfig
from liver_gan.errors import LiverGanError
from liver_gan.lesions.config import ProceduralLesionConfig
from liver_gan.lesions.fit import fit_options
from liver_gan.lesions.procedural import paint_patient

def paint(seed: int = 1, volume_seed: int = 0, tumor: bool = False, **options: object):
    hu, labels = liver_volume(volume_seed, tumor=tumor)
    cfg = dataclasses.replace(ProceduralLesionConfig(count_min=3, count_max=3), **options)
    return hu, labels, cfg, paint_patient(hu, labels, SPACING, cfg, np.random.default_rng(seed), "volume-9.nii.gz")


def distance_to(mask: np.ndarray) -> np.ndarray:
    return ndimage.distance_transform_edt(~mask, sampling=SPACING)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_lesions_lie_in_the_healthy_liver_with_the_margins(seed: int) -> None:
    hu, labels, cfg, painting = paint(seed, tumor=True)

    assert len(painting.lesions) == 3 and painting.tumor.any()
    assert np.all(labels[painting.tumor] == 1)
    assert distance_to(labels == 0)[painting.tumor].min() > cfg.margin_mm
    vessels = (labels == 1) & (hu > painting.liver_hu + cfg.vessel_above_liver_hu)
    assert vessels.sum() > 100  # the vessels are there, and the lesions keep away from them
    assert distance_to(vessels)[painting.tumor].min() > cfg.vessel_margin_mm
    assert distance_to(labels == 2)[painting.tumor].min() > cfg.tumor_margin_mm


def test_only_lesions_and_their_mass_effect_zones_change() -> None:
    hu, labels, cfg, painting = paint(mass_effect_mm=2.0)

    differs = painting.hu != hu
    assert np.array_equal(hu[~painting.changed], painting.hu[~painting.changed])
    assert np.all(differs[painting.tumor])  # every tumor voxel got tumor HU
    pushed = differs & ~painting.tumor
    assert pushed.sum() > 0, "the mass effect moved no liver"
    reach = cfg.mass_effect_zone_mm + 2 * cfg.diameter_mm_max
    assert distance_to(painting.tumor)[pushed].max() < reach
    assert np.all(labels[pushed] == 1)


def test_without_mass_effect_only_the_lesions_change() -> None:
    hu, _, _, painting = paint(mass_effect_mm=0.0)

    assert np.array_equal(painting.hu != hu, painting.tumor)


@pytest.mark.parametrize(
    ("smallest", "largest", "drawn"),
    [(5.0, 6.0, {}), (8.0, 10.0, {}), (14.0, 16.0, {"rim_probability": 1.0}), (22.0, 26.0, {"necrosis_probability": 1.0})],
)
def test_a_lesion_of_any_size_is_the_contrast_darker_than_the_liver_on_average(
    smallest: float, largest: float, drawn: dict[str, float]
) -> None:
    """contrast_hu is the mean inside the label (what fit_from measures on real tumors), for small
    lesions that are mostly soft edge as for large ones, with a rim or a necrotic core drawn."""
    hu, _, cfg, painting = paint(
        count_min=1, count_max=1, diameter_mm_min=smallest, diameter_mm_max=largest, diameter_mm_median=largest,
        texture_hu=0.0, contrast_jitter_hu=0.0, mass_effect_mm=0.0, **drawn,
    )
    (lesion,) = painting.lesions
    assert smallest * 0.8 <= lesion.diameter_mm <= largest * 1.2

    assert float(painting.hu[painting.tumor].mean()) == pytest.approx(LIVER_HU + cfg.contrast_hu, abs=3.0)
    shift = painting.hu[painting.tumor] - hu[painting.tumor]
    assert float(shift.mean()) == pytest.approx(cfg.contrast_hu, abs=0.5)
    depth = ndimage.distance_transform_edt(painting.tumor, sampling=SPACING)[painting.tumor]
    if not drawn:  # the soft edge: lighter at the outline than the contrast, darker beyond it
        assert shift[depth <= 1.5].mean() > cfg.contrast_hu > shift[depth > 1.5].mean()


def test_neighbouring_slices_of_a_lesion_overlap() -> None:
    _, _, _, painting = paint(diameter_mm_min=10.0)

    for lesion in painting.lesions:
        mask = lesion.mask
        slices = np.flatnonzero(mask.any(axis=(0, 1)))
        assert len(slices) >= 2  # 10 mm and more across 2.5 mm slices
        assert np.array_equal(slices, np.arange(slices[0], slices[-1] + 1))
        for k in slices[:-1]:
            assert (mask[:, :, k] & mask[:, :, k + 1]).any(), f"slices {k} and {k + 1} disagree"


def test_the_same_seed_paints_the_same_lesions_and_another_seed_others() -> None:
    first, again, other = paint(seed=5)[3], paint(seed=5)[3], paint(seed=6)[3]

    assert first.hu.tobytes() == again.hu.tobytes()
    assert np.array_equal(first.tumor, again.tumor)
    assert not np.array_equal(first.tumor, other.tumor)


def test_a_volume_without_liver_is_refused_naming_the_file() -> None:
    hu, labels = liver_volume()
    with pytest.raises(LiverGanError, match=r"volume-9\.nii\.gz: no healthy liver \(label 1\)"):
        paint_patient(hu, np.zeros_like(labels), SPACING, ProceduralLesionConfig(), np.random.default_rng(0),
                      "volume-9.nii.gz")


def test_a_lesion_larger_than_its_liver_is_refused_naming_the_option() -> None:
    with pytest.raises(LiverGanError, match=r"volume-9\.nii\.gz: a lesion of lesion\.diameter_mm_min=150 mm does not fit"):
        paint(diameter_mm_min=150.0, diameter_mm_median=150.0, diameter_mm_max=150.0)


def write_painted_dataset(folder: Path, cfg: ProceduralLesionConfig, patients: int) -> None:
    """Volumes of healthy liver with lesions painted by ``cfg``, written as a LiTS folder."""
    for patient in range(patients):
        hu, labels = liver_volume(seed=patient, shape=(80, 72, 40))
        painting = paint_patient(hu, labels, SPACING, cfg, np.random.default_rng(100 + patient), "test")
        affine = np.diag([*SPACING, 1.0])
        write_nifti(folder / f"volume-{patient}.nii.gz", painting.hu, affine)
        write_nifti(folder / f"segmentation-{patient}.nii.gz", np.where(painting.tumor, 2, labels).astype(np.uint8), affine)


@pytest.mark.parametrize(("contrast", "median"), [(-45.0, 12.0), (-25.0, 18.0)])
def test_fit_from_recovers_the_contrast_and_sizes_the_tumors_were_made_with(
    tmp_path: Path, contrast: float, median: float
) -> None:
    made = ProceduralLesionConfig(
        count_min=2, count_max=3, contrast_hu=contrast, contrast_jitter_hu=0.0, diameter_mm_median=median,
        diameter_mm_sigma=0.15, diameter_mm_min=6.0, diameter_mm_max=30.0, lobulation=0.0, elongation=0.1,
        elastic_mm=0.5, mass_effect_mm=0.0, necrosis_probability=0.0, vessel_above_liver_hu=500.0,
    )
    write_painted_dataset(tmp_path, made, patients=4)

    fitted, measured = fit_options(ProceduralLesionConfig(diameter_mm_min=4.0), tmp_path, Layout.lits)

    assert measured["patients"] == 4 and 8 <= measured["tumors"] <= 12
    assert fitted.contrast_hu == pytest.approx(contrast, abs=3.0)  # with the default soft edge
    assert fitted.diameter_mm_median == pytest.approx(median, rel=0.2)
    assert fitted.diameter_mm_sigma < 0.4
    assert measured["tumors_per_patient"] == [2, 3]
    assert (fitted.count_min, fitted.count_max) == (1, 4)  # the count stays the user's


def test_fit_from_a_folder_without_tumors_names_the_option(tmp_path: Path) -> None:
    hu, labels = liver_volume()
    write_nifti(tmp_path / "volume-1.nii.gz", hu, np.diag([*SPACING, 1.0]))
    write_nifti(tmp_path / "segmentation-1.nii.gz", labels.astype(np.uint8), np.diag([*SPACING, 1.0]))

    with pytest.raises(LiverGanError, match="lesion.fit_from=.*: no labelled tumor"):
        fit_options(ProceduralLesionConfig(), tmp_path, Layout.lits)


def test_the_phantom_paints_through_the_painter_and_keeps_its_volumes() -> None:
    """The phantom's lesions come from liver_gan/lesions/ since the painter was shared; the
    volumes are byte for byte those of the phantom before (GENERATOR_VERSION 1)."""
    cfg = PhantomConfig(num_volumes=3, in_plane=64, min_slices=16, max_slices=20)
    digest = hashlib.sha256()
    for index in (0, 2):
        scan = synthesize_scan(cfg, index)
        digest.update(scan.hu.tobytes())
        digest.update(scan.labels.tobytes())

    assert digest.hexdigest() == "04edfae709374d08c0ea3634d1289b0fc00a23cc7390a2d37537bf913b1dce20"


class ConstantFill:
    """A stand-in for the learned inpainter (liver_gan/lesions/learned.py's contract): 40 HU in the region."""

    def __init__(self) -> None:
        self.calls: list[tuple[np.ndarray, np.ndarray]] = []

    def fill(
        self, hu: np.ndarray, region: np.ndarray, liver: np.ndarray, spacing: tuple[float, float, float],
        rng: np.random.Generator,
    ) -> np.ndarray:
        self.calls.append((region.copy(), liver.copy()))
        return np.where(region, np.float32(40.0), hu)


def test_a_learned_fill_gets_the_procedural_masks_and_changes_only_them() -> None:
    hu, labels = liver_volume()
    fill = ConstantFill()
    cfg = ProceduralLesionConfig(count_min=2, count_max=2, mass_effect_mm=0.0)

    painting = paint_patient(hu, labels, SPACING, cfg, np.random.default_rng(3), "volume-9.nii.gz", fill)

    assert len(fill.calls) == 1
    region, liver = fill.calls[0]
    assert np.array_equal(region, painting.tumor) and np.array_equal(liver, labels == 1)
    assert np.array_equal(painting.hu != hu, painting.tumor)
    assert np.all(painting.hu[painting.tumor] == 40.0)  # the model's values, not procedural shading
