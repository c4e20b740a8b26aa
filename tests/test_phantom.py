"""The embedded phantom: valid LiTS pairs, deterministic, realistic proportions, safe to share."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from omegaconf import OmegaConf

from liver_gan.data.phantom import phantom_key, storage, write_phantom
from liver_gan.data.schema import PhantomConfig
from liver_gan.errors import LiverGanError

# Small enough to write in a few seconds, big enough for realistic proportions.
CONFIG = PhantomConfig(num_volumes=8, in_plane=96, min_slices=24, max_slices=32, seed=5)
TINY = PhantomConfig(num_volumes=3, in_plane=64, min_slices=12, max_slices=16, seed=9)


@pytest.fixture(scope="module")
def phantom_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_phantom(tmp_path_factory.mktemp("phantom"), CONFIG)


def read_pair(directory: Path, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """HU, labels and affine of patient ``index``, in nibabel's canonical RAS+ orientation."""
    volume = nib.as_closest_canonical(nib.load(directory / f"volume-{index}.nii.gz"))
    segmentation = nib.as_closest_canonical(nib.load(directory / f"segmentation-{index}.nii.gz"))
    labels = np.rint(np.asarray(segmentation.dataobj)).astype(np.int64)
    return volume.get_fdata(), labels, volume.affine


def slice_counts(labels: np.ndarray) -> tuple[int, int, int]:
    """(slices, liver slices, tumor slices), counted straight from the mask's axial slices."""
    liver = (labels >= 1).any(axis=(0, 1))
    tumor = (labels == 2).any(axis=(0, 1))
    return labels.shape[2], int(liver.sum()), int(tumor.sum())


def test_writes_valid_lits_pairs(phantom_dir: Path) -> None:
    expected = {
        f"{kind}-{index}.nii.gz"
        for index in range(CONFIG.num_volumes)
        for kind in ("volume", "segmentation")
    }
    assert {path.name for path in phantom_dir.iterdir()} == expected
    assert phantom_dir.name == f"phantom-{phantom_key(CONFIG)}"
    orientations, scaled = set(), []
    for index in range(CONFIG.num_volumes):
        volume = nib.load(phantom_dir / f"volume-{index}.nii.gz")
        segmentation = nib.load(phantom_dir / f"segmentation-{index}.nii.gz")
        assert volume.shape == segmentation.shape
        assert volume.shape[:2] == (CONFIG.in_plane, CONFIG.in_plane)
        assert CONFIG.min_slices <= volume.shape[2] <= CONFIG.max_slices
        np.testing.assert_allclose(volume.affine, segmentation.affine)
        assert np.issubdtype(volume.get_data_dtype(), np.integer)
        assert segmentation.get_data_dtype() == np.uint8
        assert set(np.unique(np.asarray(segmentation.dataobj))) <= {0, 1, 2}
        hu = volume.get_fdata()
        assert hu.min() >= -1024 and hu.max() <= 3071 and np.array_equal(hu, np.rint(hu))
        pixel_x, pixel_y, thickness = volume.header.get_zooms()
        assert pixel_x == pytest.approx(pixel_y) and 340 <= pixel_x * CONFIG.in_plane <= 400
        assert 2.5 <= thickness <= 5.0
        orientations.add(nib.aff2axcodes(volume.affine))
        scaled.append(volume.dataobj.inter != 0)
    # Stored like real files, so the reader's reorientation and scaling are exercised.
    assert {("R", "A", "S"), ("L", "P", "S"), ("L", "P", "I")} <= orientations
    assert any(scaled) and not all(scaled)


def test_liver_lies_on_the_patients_right(phantom_dir: Path) -> None:
    for index in range(CONFIG.num_volumes):
        hu, labels, affine = read_pair(phantom_dir, index)
        body_x = np.argwhere(hu > -500)[:, 0].mean()
        liver_x = np.argwhere(labels >= 1)[:, 0].mean()
        # In RAS+ world coordinates, +x points to the patient's right.
        assert affine[0, 0] > 0 and liver_x > body_x + 0.05 * hu.shape[0]


def test_liver_and_tumor_proportions(phantom_dir: Path) -> None:
    counts = [slice_counts(read_pair(phantom_dir, i)[1]) for i in range(CONFIG.num_volumes)]
    assert all(0 < liver < slices for slices, liver, _ in counts)  # slices without liver too
    assert any(tumor == 0 for _, _, tumor in counts)  # patients with a healthy liver
    assert sum(tumor > 0 for _, _, tumor in counts) >= CONFIG.num_volumes // 2
    liver_slices = sum(liver for _, liver, _ in counts)
    tumor_slices = sum(tumor for _, _, tumor in counts)
    # LiTS has tumor in about 37% of its liver slices; healthy liver slices must stay plentiful.
    assert 0.25 <= tumor_slices / liver_slices <= 0.6
    assert liver_slices - tumor_slices >= 0.4 * liver_slices


def test_tissue_intensities(phantom_dir: Path) -> None:
    for index in range(CONFIG.num_volumes):
        hu, labels, _ = read_pair(phantom_dir, index)
        liver = np.median(hu[labels == 1])
        assert 40 <= liver <= 80
        if (labels == 2).any():
            assert np.median(hu[labels == 2]) < liver - 10  # hypodense lesions
        body = hu[(hu > -500) & (hu < 200)]
        histogram, edges = np.histogram(body, bins=np.arange(-200, 10, 10))
        fat_peak = edges[np.argmax(histogram)] + 5
        assert -120 <= fat_peak <= -80  # subcutaneous and visceral fat
        assert np.mean((body > -150) & (body < -50)) > 0.2


def test_same_config_gives_identical_volumes(tmp_path: Path) -> None:
    first = write_phantom(tmp_path / "a", TINY)
    second = write_phantom(tmp_path / "b", TINY)
    other_seed = write_phantom(tmp_path / "c", dataclasses.replace(TINY, seed=TINY.seed + 1))
    assert first.name == second.name != other_seed.name
    for index in range(TINY.num_volumes):
        hu, labels, affine = read_pair(first, index)
        same_hu, same_labels, same_affine = read_pair(second, index)
        assert np.array_equal(hu, same_hu) and np.array_equal(labels, same_labels)
        assert np.array_equal(affine, same_affine)
        other_hu, other_labels, _ = read_pair(other_seed, index)
        assert other_hu.shape != hu.shape or not np.array_equal(other_hu, hu)
        assert other_labels.shape != labels.shape or not np.array_equal(other_labels, labels)


@pytest.mark.parametrize("field", [item.name for item in dataclasses.fields(PhantomConfig)])
def test_key_covers_every_parameter(field: str) -> None:
    changed = dataclasses.replace(TINY, **{field: getattr(TINY, field) + 1})
    assert phantom_key(changed) != phantom_key(TINY)


def test_second_call_reuses_the_phantom(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    directory = write_phantom(tmp_path, TINY)
    written = {path.name: path.stat().st_mtime_ns for path in directory.iterdir()}

    def must_not_draw(*args: object) -> None:
        raise AssertionError("the phantom was drawn again")

    monkeypatch.setattr(storage, "synthesize_scan", must_not_draw)
    assert write_phantom(tmp_path, TINY) == directory
    assert {path.name: path.stat().st_mtime_ns for path in directory.iterdir()} == written


def test_two_concurrent_writers_share_one_phantom(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from liver_gan.data.schema import PhantomConfig
        from liver_gan.data.phantom import write_phantom
        config = PhantomConfig(**{dataclasses.asdict(TINY)!r})
        print(write_phantom(Path({str(tmp_path / "shared")!r}), config))
        """
    )
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", script],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [writer.communicate(timeout=300) for writer in writers]
    assert [writer.returncode for writer in writers] == [0, 0], [err for _, err in results]
    paths = {Path(out.strip()) for out, _ in results}
    assert len(paths) == 1
    directory = paths.pop()
    # One finished phantom and its lock; no half-written temporary directory left behind.
    assert sorted(path.name for path in (tmp_path / "shared").iterdir()) == sorted(
        [directory.name, f"{directory.name}.lock"]
    )
    reference = write_phantom(tmp_path / "alone", TINY)
    for index in range(TINY.num_volumes):
        hu, labels, _ = read_pair(directory, index)
        reference_hu, reference_labels, _ = read_pair(reference, index)
        assert np.array_equal(hu, reference_hu) and np.array_equal(labels, reference_labels)


@pytest.mark.parametrize(
    ("field", "value"),
    [("num_volumes", 0), ("in_plane", 16), ("min_slices", 2), ("max_slices", 11)],
)
def test_bad_parameters_name_the_option(tmp_path: Path, field: str, value: int) -> None:
    with pytest.raises(LiverGanError, match=f"dataset.phantom.{field}"):
        write_phantom(tmp_path, dataclasses.replace(TINY, **{field: value}))
    assert not any(tmp_path.iterdir())


def test_hydra_config_gets_the_same_phantom(tmp_path: Path) -> None:
    """Jobs pass ``cfg.dataset.phantom`` as an OmegaConf node: same key, same directory."""
    node = OmegaConf.structured(TINY)
    assert phantom_key(node) == phantom_key(TINY)
    assert write_phantom(tmp_path, node) == tmp_path / f"phantom-{phantom_key(TINY)}"
