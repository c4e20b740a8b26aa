"""``liver-gan-prepare`` end to end, as a user runs it: a subprocess on a tiny LiTS folder."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from nifti_factory import count_from_masks, write_lits_dataset
from omegaconf import DictConfig
from PIL import Image

from liver_gan.data.dataset import prepare_dataset
from liver_gan.data.export import export_imagefolder
from liver_gan.data.summary import format_summary_table
from liver_gan.images import to_uint8

PREPARE = shutil.which("liver-gan-prepare", path=str(Path(sys.executable).parent))


def run_prepare(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    assert PREPARE is not None, "liver-gan-prepare is not installed: pip install -e ."
    command = [
        PREPARE,
        "dataset=lits",
        f"dataset.cache_dir={tmp_path / 'cache'}",
        f"hydra.run.dir={tmp_path / 'run'}",
        "dataset.resolution=16",
        "dataset.num_workers=1",
        *overrides,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tmp_path)


def test_prepare_writes_summary_table_and_imagefolder(tmp_path: Path) -> None:
    root = write_lits_dataset(tmp_path / "LiTS" / "Training Batch 1", range(1, 7))

    result = run_prepare(tmp_path, f"dataset.root='{root.parent}'", "dataset.subset=all", "export=imagefolder")

    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "run" / "dataset_summary.json").read_text())
    assert set(summary) == {"counts", "patients", "per_patient"}
    counts = summary["counts"]
    liver_slices, tumor_slices = count_from_masks(sorted(root.glob("segmentation-*")))
    assert counts["train"]["tumor"] + counts["val"]["tumor"] == tumor_slices
    assert sum(counts[split][name] for split in counts for name in ("healthy", "tumor")) == liver_slices
    assert sorted(summary["patients"]["train"] + summary["patients"]["val"]) == list(range(1, 7))
    assert format_summary_table(summary) in result.stdout
    for split in ("train", "val"):
        for name in ("healthy", "tumor"):
            pngs = sorted((tmp_path / "run" / "imagefolder" / split / name).glob("p*_s*.png"))
            assert len(pngs) == counts[split][name]
    first = next((tmp_path / "run" / "imagefolder" / "train" / "tumor").glob("*.png"))
    with Image.open(first) as image:
        assert (image.mode, image.size) == ("L", (16, 16))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["dataset.root=/no/such/LiTS"], "dataset.root /no/such/LiTS does not exist"),
        (["dataset.root=.", "export=zip"], "export=zip is unknown"),
    ],
)
def test_bad_input_gives_one_line_and_exit_code_2(tmp_path: Path, overrides: list, message: str) -> None:
    result = run_prepare(tmp_path, *overrides)

    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("liver-gan: error: "), result.stderr
    assert message in lines[0]


def test_export_keeps_only_the_subset_classes(tmp_path: Path, compose_config: Callable[..., DictConfig]) -> None:
    root = write_lits_dataset(tmp_path / "LiTS", range(1, 4))
    cfg = compose_config(
        ["dataset=lits", f"dataset.root='{root}'", f"dataset.cache_dir='{tmp_path / 'cache'}'", "dataset.resolution=16",
         "dataset.subset=tumor", "dataset.val_fraction=0.4"],
        config_name="prepare",
    )
    prepared = prepare_dataset(cfg.dataset, seed=0)

    folder = export_imagefolder(prepared, tmp_path / "imagefolder")

    assert sorted(path.relative_to(folder).as_posix() for path in folder.iterdir()) == ["train", "val"]
    for split, slices in (("train", prepared.train), ("val", prepared.val)):
        assert [path.name for path in (folder / split).iterdir()] == ["tumor"]
        names = sorted(path.name for path in (folder / split / "tumor").iterdir())
        expected = sorted(f"p{p}_s{s}.png" for p, s in zip(slices.patient_ids.tolist(), slices.slice_indices.tolist()))
        assert names == expected
    first = f"p{int(prepared.train.patient_ids[0])}_s{int(prepared.train.slice_indices[0])}.png"
    with Image.open(folder / "train" / "tumor" / first) as image:
        pixels = np.asarray(image)
    assert pixels.dtype == np.uint8
    np.testing.assert_array_equal(pixels, to_uint8(prepared.train.images[0, 0]).numpy())
    assert not [path for path in tmp_path.iterdir() if path.name.endswith(".tmp")]
