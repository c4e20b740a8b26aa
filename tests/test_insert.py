"""``liver-gan-insert`` on tiny LiTS folders stored the ways real files come, and end to end on a
copy of the real CT in ../shared: what it writes, where, what it never touches, and that the
output is a dataset the other tools read."""

from __future__ import annotations

import csv
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

import nibabel as nib
import numpy as np
import pytest
import yaml
from lesion_factory import write_liver_dataset
from omegaconf import DictConfig
from scipy import ndimage

from liver_gan.data.dataset import prepare_dataset
from liver_gan.errors import LiverGanError
from liver_gan.lesions.insert import MANIFEST, MANIFEST_COLUMNS, SUMMARY, insert_lesions

INSERT = shutil.which("liver-gan-insert", path=str(Path(sys.executable).parent))
REAL_CT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real-ct"


def run_insert(tmp_path: Path, *overrides: str, run_dir: Path | None = None) -> subprocess.CompletedProcess:
    assert INSERT is not None, "liver-gan-insert is not installed: pip install -e ."
    command = [INSERT, "dataset=lits", f"hydra.run.dir={run_dir or tmp_path / 'run'}", *overrides]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)


def tree_digest(root: Path) -> dict[str, str]:
    """Every file below ``root`` (hidden ones and lock files included) with its sha256."""
    return {str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(root.rglob("*")) if path.is_file()}


def file_arrays(path: Path) -> tuple[np.ndarray, nib.Nifti1Image]:
    """The voxels as stored in the file (its dtype and orientation), and the image."""
    image = nib.load(str(path))
    return np.asanyarray(image.dataobj.get_unscaled()), image


def insert_in_process(
    compose_config: Callable[..., DictConfig], source: Path, run_dir: Path, *overrides: str
) -> dict:
    cfg = compose_config(["dataset=lits", f"dataset.root={source}", *overrides], config_name="insert", hydra=False)
    return insert_lesions(cfg, run_dir, "procedural")


def test_insert_paints_the_training_patients_and_writes_manifest_and_record(tmp_path: Path) -> None:
    source = write_liver_dataset(tmp_path / "source", range(1, 5))
    before = tree_digest(source)

    result = run_insert(tmp_path, f"dataset.root={source}", "dataset.val_patients=[2]", "seed=4")

    assert result.returncode == 0, result.stderr
    run = tmp_path / "run"
    assert tree_digest(source) == before  # nothing written there, not even a lock file
    written = sorted(path.name for path in run.glob("*.nii.gz"))
    assert written == [f"{kind}-{n}.nii.gz" for kind in ("segmentation", "volume") for n in (1, 3, 4)]
    record = yaml.safe_load((run / ".hydra" / "config.yaml").read_text())
    assert record["dataset"]["val_patients"] == [2] and record["seed"] == 4 and "contrast_hu" in record["lesion"]
    assert (run / ".hydra" / "overrides.yaml").is_file()
    summary = yaml.safe_load((run / SUMMARY).read_text())
    assert summary["patients"] == {"train": [1, 3, 4], "val": [2], "test": []}
    with open(run / MANIFEST, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == MANIFEST_COLUMNS and len(rows) == summary["lesions"] >= 3
    for row in rows:
        assert row["patient"] in {"1", "3", "4"} and row["option"] == "procedural" and row["seed"] == "4"
        labels, image = file_arrays(run / f"segmentation-{row['patient']}.nii.gz")
        index = tuple(int(row[f"centre_{axis}"]) for axis in "ijk")
        assert labels[index] == 2
        world = image.affine @ np.array([*index, 1.0])
        assert world[:3] == pytest.approx([float(row[f"centre_{axis}_mm"]) for axis in "xyz"], abs=0.01)
        assert float(row["lesion_hu"]) < float(row["liver_hu"])  # hypodense, as the defaults are
        assert float(row["diameter_mm"]) >= 5.0


def test_written_pairs_keep_the_source_geometry_and_differ_exactly_at_new_label_2(
    tmp_path: Path, compose_config: Callable[..., DictConfig]
) -> None:
    source = write_liver_dataset(tmp_path / "source", range(1, 4))

    insert_in_process(compose_config, source, tmp_path / "run", "dataset.val_fraction=0", "lesion.mass_effect_mm=0")

    for patient in (1, 2, 3):
        old, old_image = file_arrays(source / f"volume-{patient}.nii.gz")
        new, new_image = file_arrays(tmp_path / "run" / f"volume-{patient}.nii.gz")
        assert new.dtype == old.dtype and new.shape == old.shape
        assert np.array_equal(new_image.affine, old_image.affine)
        assert new_image.header.get_slope_inter() == old_image.header.get_slope_inter()
        old_labels, _ = file_arrays(source / f"segmentation-{patient}.nii.gz")
        new_labels, _ = file_arrays(tmp_path / "run" / f"segmentation-{patient}.nii.gz")
        painted = (new_labels == 2) & (old_labels != 2)
        assert painted.any()
        assert np.array_equal(new != old, painted)
        assert np.array_equal(new_labels[~painted], old_labels[~painted])


def test_the_mass_effect_changes_only_liver_near_the_lesions(
    tmp_path: Path, compose_config: Callable[..., DictConfig]
) -> None:
    source = write_liver_dataset(tmp_path / "source", [1])

    insert_in_process(compose_config, source, tmp_path / "run", "dataset.val_fraction=0", "lesion.mass_effect_mm=2")

    old, _ = file_arrays(source / "volume-1.nii.gz")
    new, _ = file_arrays(tmp_path / "run" / "volume-1.nii.gz")
    labels, _ = file_arrays(tmp_path / "run" / "segmentation-1.nii.gz")
    pushed = (new != old) & (labels != 2)
    assert pushed.any() and np.all(labels[pushed] == 1)
    distance = ndimage.distance_transform_edt(labels != 2)  # in voxels of 1.5 mm and more
    assert distance[pushed].max() < 8.0 / 1.5 + 2 * 47.0


def test_the_same_seed_writes_the_same_bytes(tmp_path: Path, compose_config: Callable[..., DictConfig]) -> None:
    source = write_liver_dataset(tmp_path / "source", range(1, 4))

    runs = [tmp_path / name for name in ("a", "b", "c")]
    for run, seed in zip(runs, (3, 3, 4)):
        insert_in_process(compose_config, source, run, "dataset.val_patients=[3]", f"seed={seed}")

    first, again, other = (tree_digest(run) for run in runs)
    assert first == again
    assert first["volume-1.nii.gz"] != other["volume-1.nii.gz"]


def test_split_is_prepares_and_no_val_patient_is_painted(
    tmp_path: Path, compose_config: Callable[..., DictConfig]
) -> None:
    source = write_liver_dataset(tmp_path / "source", range(1, 7))
    options = ["dataset.val_fraction=0.34", f"dataset.cache_dir={tmp_path / 'cache'}", "dataset.resolution=16"]

    summary = insert_in_process(compose_config, source, tmp_path / "run", *options, "seed=2")

    prepared = prepare_dataset(
        compose_config(["dataset=lits", f"dataset.root={source}", *options], config_name="prepare", hydra=False).dataset,
        seed=2,
    )
    assert summary["patients"]["val"] == prepared.summary["patients"]["val"] and summary["patients"]["val"]
    painted = {int(path.name.split("-")[1].split(".")[0]) for path in (tmp_path / "run").glob("volume-*.nii.gz")}
    assert painted == set(prepared.summary["patients"]["train"])


def test_existing_files_in_the_run_dir_are_never_replaced(
    tmp_path: Path, compose_config: Callable[..., DictConfig]
) -> None:
    source = write_liver_dataset(tmp_path / "source", [1])
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "volume-1.nii.gz").write_text("mine")

    with pytest.raises(LiverGanError, match="already exists: liver-gan-insert never replaces files"):
        insert_in_process(compose_config, source, tmp_path / "run", "dataset.val_fraction=0")
    assert (tmp_path / "run" / "volume-1.nii.gz").read_text() == "mine"


@pytest.mark.parametrize(
    ("case", "overrides", "message"),
    [
        ("unknown val id", ["dataset.val_patients=[1,42]"], r"dataset.val_patients=[1, 42]: no patient 42 in dataset.root"),
        ("no liver", ["dataset.val_fraction=0"], "segmentation-1.nii.gz: no healthy liver (label 1)"),
        ("lesion larger than liver", ["lesion.diameter_mm_min=200", "lesion.diameter_mm_median=200",
                                      "lesion.diameter_mm_max=200", "dataset.val_fraction=0"],
         "a lesion of lesion.diameter_mm_min=200 mm does not fit in this liver"),
        ("run dir in source", ["dataset.val_fraction=0"], "is inside dataset.root"),
    ],
)
def test_bad_input_gives_one_line_naming_the_option_or_file(
    tmp_path: Path, case: str, overrides: list[str], message: str
) -> None:
    source = write_liver_dataset(tmp_path / "source", [1], liver=case != "no liver")
    before = tree_digest(source)
    run_dir = source / "out" if case == "run dir in source" else None

    result = run_insert(tmp_path, f"dataset.root={source}", *overrides, run_dir=run_dir)

    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("liver-gan: error: "), result.stderr
    assert message in lines[0]
    assert tree_digest(source) == before
    assert not (source / "out").exists()


@pytest.mark.slow
def test_real_ct_with_inserted_tumors_prepares_and_trains(tmp_path: Path) -> None:
    """On a copy of the two real scans (LiTS 117 held out for validation): the healthy
    TotalSegmentator liver gets tumors, and the run dir is a LiTS dataset prepare and train read."""
    source = tmp_path / "source"
    source.mkdir()
    for scan in ("lits117", "totalsegmentator"):
        for path in (REAL_CT / scan).glob("*.nii.gz"):
            shutil.copy(path, source / path.name)
    before = tree_digest(source)

    result = run_insert(tmp_path, f"dataset.root={source}", "dataset.val_patients=[117]", "seed=1")

    assert result.returncode == 0, result.stderr
    assert tree_digest(source) == before
    run = tmp_path / "run"
    assert sorted(path.name for path in run.glob("*.nii.gz")) == ["segmentation-0.nii.gz", "volume-0.nii.gz"]
    labels, _ = file_arrays(run / "segmentation-0.nii.gz")
    assert (np.rint(labels) == 2).any()
    common = [f"dataset.root={run}", f"dataset.cache_dir={tmp_path / 'cache'}", "dataset.resolution=32", "dataset=lits"]
    prepare = subprocess.run(
        [shutil.which("liver-gan-prepare", path=str(Path(sys.executable).parent)), *common,
         f"hydra.run.dir={tmp_path / 'prepare'}"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert prepare.returncode == 0, prepare.stderr
    summary = yaml.safe_load((tmp_path / "prepare" / "dataset_summary.json").read_text())
    assert summary["counts"]["train"]["tumor"] > 0
    train = subprocess.run(
        [shutil.which("liver-gan-train", path=str(Path(sys.executable).parent)), *common, "debug=smoke",
         "model=mlp", "model.generator_widths=[32]", "model.discriminator_widths=[32]", "model.latent_dim=8",
         "trainer.ema_kimg=null", "eval.enabled=false", f"hydra.run.dir={tmp_path / 'train'}"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    assert train.returncode == 0, train.stderr
    assert (tmp_path / "train" / "checkpoints" / "last.pt").is_file()


def test_fit_from_the_dataset_itself_reads_only_its_training_patients(
    tmp_path: Path, compose_config: Callable[..., DictConfig]
) -> None:
    source = write_liver_dataset(tmp_path / "source", range(1, 5))  # patients 2 and 4 hold tumors

    with pytest.raises(LiverGanError, match="no labelled tumor .* in its 2 patients"):
        insert_in_process(compose_config, source, tmp_path / "held", "dataset.val_patients=[2,4]",
                          f"lesion.fit_from={source}", "lesion.diameter_mm_min=3")

    summary = insert_in_process(compose_config, source, tmp_path / "run", "dataset.val_patients=[1,3]",
                                f"lesion.fit_from={source}", "lesion.diameter_mm_min=3")
    assert summary["fitted"]["patients"] == 2 and summary["fitted"]["tumors"] == 2
    assert summary["lesion"]["contrast_hu"] == pytest.approx(60.0 - 110.0, abs=6.0)
