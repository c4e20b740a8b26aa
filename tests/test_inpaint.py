"""The lesion inpainter (model=inpaint, lesion=learned): it beats mean-filling on real tumor crops,
resumes exactly, fills only inside the region it is given, and refuses what it cannot use."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Iterator

import nibabel as nib
import numpy as np
import pytest
import torch
from omegaconf import DictConfig, OmegaConf
from tiny_gan import save_tiny_checkpoint, tiny_phantom_overrides

from liver_gan.data.nifti import read_scan, write_nifti
from liver_gan.errors import LiverGanError
from liver_gan.lesions.learned import load_inpainter
from liver_gan.runs import load_generator
from liver_gan.training.checkpoint import load_checkpoint
from liver_gan.training.loop import train

Compose = Callable[..., DictConfig]
LITS117 = Path(__file__).resolve().parents[2] / "shared" / "data" / "real-ct" / "lits117"
# Two slabs of lits117's 128 slices, 8 slices apart so that neighbouring slices do not straddle the split.
SLABS = {1: slice(0, 60), 2: slice(68, 128)}


@pytest.fixture(scope="module")
def slabs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """lits117 cut into two patients (one trains, one validates), as LiTS pairs in a temporary folder."""
    if not (LITS117 / "volume-117.nii.gz").is_file():
        pytest.skip(f"no real tumor scan at {LITS117}")
    root = tmp_path_factory.mktemp("lits117_slabs")
    volume, segmentation = nib.load(LITS117 / "volume-117.nii.gz"), nib.load(LITS117 / "segmentation-117.nii.gz")
    hu = np.asarray(volume.dataobj, dtype=np.float32)
    labels = np.asarray(segmentation.dataobj).astype(np.uint8)
    for patient, axial in SLABS.items():
        write_nifti(root / f"volume-{patient}.nii.gz", hu[:, :, axial], volume.affine)
        write_nifti(root / f"segmentation-{patient}.nii.gz", labels[:, :, axial], volume.affine)
    return root


@pytest.fixture
def inpaint_config(compose_config: Compose, slabs: Path) -> Compose:
    """A small inpainter on 32-pixel liver crops of the slabs, its cache beside them."""

    def _compose(*overrides: str) -> DictConfig:
        return compose_config(
            [
                "dataset=lits",
                f"dataset.root={slabs}",
                f"dataset.cache_dir={slabs.parent / 'cache'}",
                "dataset.val_fraction=0.5",
                "dataset.num_workers=1",
                "dataset.resolution=32",
                "dataset.crop=liver",
                "dataset.masks=true",
                "dataset.subset=tumor",
                "model=inpaint",
                "trainer.batch_size=16",
                "trainer.ema_kimg=null",
                "trainer.num_fixed_samples=8",
                "trainer.tick_seconds=60",
                f"eval.cache_dir={slabs.parent / 'reference'}",
                *overrides,
            ],
            hydra=False,
        )

    return _compose


@pytest.fixture(scope="module", autouse=True)
def restore_determinism() -> Iterator[None]:
    yield
    torch.use_deterministic_algorithms(False)


@pytest.mark.slow
def test_the_inpainter_beats_mean_filling_on_held_out_real_tumors(
    inpaint_config: Compose, tmp_path: Path, fid_weights: Path
) -> None:
    """200 steps on one slab of lits117's slices; the other slab's tumors are filled better than by
    their surrounding liver's mean, in HU inside the tumor and in FID of the filled crops."""
    metrics = train(inpaint_config("trainer.max_steps=200"), tmp_path)
    assert metrics["num_real"] > 10 and metrics["real_pool"] == "val"
    assert metrics["l1_region_hu"] < metrics["mean_fill_l1_region_hu"]
    assert metrics["fid"] < metrics["mean_fill_fid"]


@pytest.mark.slow
def test_a_capped_inpainter_run_continues_exactly(inpaint_config: Compose, tmp_path: Path) -> None:
    """6 steps at once, or 3 then a resume to 6: the same networks and optimizer moments, with
    random blobs in every hole so that the resumed steps must redraw the same holes."""
    exact = ["eval.enabled=false", "model.blob_probability=1", "trainer.deterministic=true", "trainer.resume=auto"]
    train(inpaint_config(*exact, "trainer.max_steps=6"), tmp_path / "uninterrupted")
    train(inpaint_config(*exact, "trainer.max_steps=3"), tmp_path / "capped")
    time.sleep(1.1)  # TensorBoard names event files by the second
    train(inpaint_config(*exact, "trainer.max_steps=6"), tmp_path / "capped")

    reference = load_checkpoint(tmp_path / "uninterrupted" / "checkpoints" / "last.pt")
    resumed = load_checkpoint(tmp_path / "capped" / "checkpoints" / "last.pt")
    assert resumed["step"] == reference["step"] == 6
    for key in ("generator", "discriminator"):
        for name, tensor in reference[key].items():
            assert torch.equal(resumed[key][name], tensor), f"{key}.{name}"
    for index, state in reference["optimizer_g"]["state"].items():
        for name, value in state.items():
            assert torch.equal(resumed["optimizer_g"]["state"][index][name], value), f"optimizer_g.{index}.{name}"


@pytest.fixture
def trained_inpainter(inpaint_config: Compose, tmp_path: Path) -> Path:
    """A run dir of an inpainter trained for 2 steps (its weights are not what these tests check)."""
    run_dir = tmp_path / "inpainter"
    train(inpaint_config("eval.enabled=false", "trainer.max_steps=2"), run_dir)
    return run_dir


def ball(shape: tuple[int, ...], centre: tuple[int, int, int], radius: float) -> np.ndarray:
    grid = np.indices(shape)
    return sum((axis - c) ** 2 for axis, c in zip(grid, centre)) <= radius**2


def test_fill_changes_only_the_voxels_inside_the_region(trained_inpainter: Path) -> None:
    scan = read_scan(LITS117 / "volume-117.nii.gz", LITS117 / "segmentation-117.nii.gz")
    hu = (scan.stored * scan.slope + scan.inter).astype(np.float32)
    liver = scan.labels >= 1
    centre = tuple(int(np.median(axis)) for axis in np.nonzero(liver))
    region = ball(hu.shape, centre, 6) & liver
    before = hu.copy()

    filled = load_inpainter(trained_inpainter, device="cpu").fill(
        hu, region, liver, scan.spacing, np.random.default_rng(0)
    )

    assert filled.dtype == np.float32 and filled.shape == hu.shape
    assert np.array_equal(hu, before), "the input volume was modified"
    assert np.array_equal(filled[~region], hu[~region])
    assert np.count_nonzero(filled[region] != hu[region]) > region.sum() // 2
    for index in np.flatnonzero(region.any(axis=(0, 1))):  # every slice the region touches is filled
        inside = region[:, :, index]
        assert np.any(filled[:, :, index][inside] != hu[:, :, index][inside]), f"slice {index}"


def test_the_sampling_tools_refuse_an_inpainter_in_one_line(trained_inpainter: Path) -> None:
    with pytest.raises(LiverGanError, match="draws no slices from noise") as refused:
        load_generator(trained_inpainter, torch.device("cpu"))
    assert "\n" not in str(refused.value)


def test_a_checkpoint_of_another_family_is_refused_in_one_line(compose_config: Compose, tmp_path: Path) -> None:
    run_dir = save_tiny_checkpoint(compose_config, tmp_path / "mlp", tiny_phantom_overrides(tmp_path))
    with pytest.raises(LiverGanError, match="not of the inpainter") as refused:
        load_inpainter(run_dir, device="cpu")
    assert "\n" not in str(refused.value) and "model=inpaint" in str(refused.value)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("dataset.masks=false", "set dataset.masks=true"),
        ("dataset.crop=none", "set dataset.crop=liver"),
        ("augment=diffaugment", "use augment=none"),
        ("eval.every_kimg=1", "set eval.every_kimg=null"),
    ],
)
def test_options_the_inpainter_cannot_use_are_refused_before_any_work(
    inpaint_config: Compose, tmp_path: Path, override: str, message: str
) -> None:
    with pytest.raises(LiverGanError, match=message) as refused:
        train(inpaint_config(override), tmp_path / "run")
    assert "\n" not in str(refused.value)
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


def test_the_model_config_is_validated(inpaint_config: Compose) -> None:
    cfg = inpaint_config()
    assert OmegaConf.get_type(cfg.model).__name__ == "InpaintConfig"
    with pytest.raises(Exception, match="l1_weigth"):
        inpaint_config("model.l1_weigth=1")
