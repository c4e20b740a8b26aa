"""Dataset build and warm start: liver-gan's slice cache against nibabel alone, then the cache hits.

The volumes are CT-like LiTS-format files at a realistic size: 512x512, 100 to 400 slices, int16
``.nii.gz``.  They are written here (an abdomen of fat, soft tissue, liver and a lesion, with
scanner-like correlated noise, so that they compress like CT): liver-gan's own phantom takes
minutes and gigabytes to draw a 400-slice volume, and stores some volumes as scaled uint16.

The floor is nibabel loading the same files serially, volume and mask, with
``np.asanyarray(img.dataobj)``: decompressing them is work any reader has to do.  liver-gan's cold
build (a fresh cache dir, ``dataset.num_workers=2``) reads the same files through the LiTS reader,
reorients, windows, resizes and writes the cache; the goal is at most 1.25x the floor.  The two
are timed in alternation, so a change in the machine's load hits both alike.

Warm start: the same ``prepare_dataset`` call again (a cache hit; goal under 1 s), and the real
images' Inception statistics from liver-gan's reference cache (a hit runs no Inception at all).
"""

from __future__ import annotations

import copy
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
from omegaconf import DictConfig, OmegaConf
from scipy import ndimage

from liver_gan.atomic import build_once
from liver_gan.data.dataset import PreparedDataset, prepare_dataset
from liver_gan.data.nifti import write_nifti
from liver_gan.metrics.context import dataset_reals
from liver_gan.metrics.inception import load_feature_extractor
from liver_gan.metrics.schema import RealPool

from configs import compose_config
from fid import inception_weights
from measure import Figure, Section, announce, format_duration, repeat_seconds, seconds_of, take_turns

IN_PLANE = 512
SLICE_COUNTS = (100, 200, 300, 400)
QUICK_SLICE_COUNTS = (100, 160)
VOXEL_MM = (0.7, 0.7, 1.5)
NOISE_HU = 12.0
REFERENCE_IMAGES = 64
QUICK_REFERENCE_IMAGES = 16
INCEPTION_BATCH = 50


def ct_like_scan(num_slices: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """int16 HU (512, 512, num_slices) and uint8 labels: body, liver over the middle slices, one lesion."""
    rng = np.random.default_rng(seed)
    y, x = np.ogrid[-1 : 1 : IN_PLANE * 1j, -1 : 1 : IN_PLANE * 1j]
    base = np.full((IN_PLANE, IN_PLANE), -1024.0, dtype=np.float32)  # padding outside the scanned circle
    base[x**2 + y**2 <= 1] = -1000.0
    base[(x / 0.85) ** 2 + (y / 0.65) ** 2 <= 1] = -100.0  # subcutaneous fat
    base[(x / 0.78) ** 2 + (y / 0.58) ** 2 <= 1] = 40.0  # soft tissue
    liver = ((x + 0.3) / 0.35) ** 2 + ((y + 0.05) / 0.3) ** 2 <= 1
    z = np.linspace(0, 1, num_slices)
    liver_slices = (z > 0.35) & (z < 0.75)
    hu = np.empty((IN_PLANE, IN_PLANE, num_slices), dtype=np.int16)
    labels = np.zeros((IN_PLANE, IN_PLANE, num_slices), dtype=np.uint8)
    for index in range(num_slices):
        image = base.copy()
        if liver_slices[index]:
            lesion = ((x + 0.3) ** 2 + y**2 + (z[index] - 0.55) ** 2) <= 0.08**2
            image[liver] = 60.0
            image[lesion] = 20.0
            labels[:, :, index] = np.where(lesion, 2, np.where(liver, 1, 0))
        noise = ndimage.gaussian_filter(rng.standard_normal((IN_PLANE, IN_PLANE), dtype=np.float32), 0.6)
        hu[:, :, index] = np.rint(image + noise * (NOISE_HU / noise.std()))
    return hu, labels


def write_ct_like_volumes(workdir: Path, slice_counts: Sequence[int]) -> Path:
    """``volume-N.nii.gz`` / ``segmentation-N.nii.gz`` pairs, written once per set of slice counts."""
    directory = workdir / ("ct-like-" + "-".join(str(count) for count in slice_counts))

    def write(building: Path) -> None:
        announce(f"writing CT-like volumes of {', '.join(map(str, slice_counts))} slices")
        affine = np.diag([*VOXEL_MM, 1.0])
        for index, count in enumerate(slice_counts):
            hu, labels = ct_like_scan(count, seed=index)
            write_nifti(building / f"volume-{index}.nii.gz", hu, affine)
            write_nifti(building / f"segmentation-{index}.nii.gz", labels, affine)

    build_once(directory, write)
    return directory


def volume_pairs(directory: Path) -> list[tuple[Path, Path]]:
    volumes = sorted(directory.glob("volume-*.nii.gz"))
    return [(volume, volume.with_name(volume.name.replace("volume-", "segmentation-"))) for volume in volumes]


def load_with_nibabel(pairs: Sequence[tuple[Path, Path]]) -> int:
    """Decompress every volume and mask, serially; returns the voxel count (so nothing is optimised away)."""
    voxels = 0
    for volume, segmentation in pairs:
        voxels += np.asanyarray(nib.load(volume).dataobj).size
        voxels += np.asanyarray(nib.load(segmentation).dataobj).size
    return voxels


def dataset_config(volumes_dir: Path, cache_dir: Path) -> DictConfig:
    """``liver-gan-prepare dataset=lits`` over these files, as a user with these volumes would run it."""
    cfg = compose_config(
        [
            "dataset=lits",
            f"dataset.root={volumes_dir}",
            f"dataset.cache_dir={cache_dir}",
            "dataset.subset=all",
            "dataset.num_workers=2",
        ],
        config_name="prepare",
    )
    return cfg.dataset


def cold_build(volumes_dir: Path, scratch: Path) -> Callable[[], PreparedDataset]:
    """A closure building the cache from nothing, in a fresh cache dir each call."""

    def build() -> PreparedDataset:
        cache_dir = Path(tempfile.mkdtemp(prefix="cache-", dir=scratch))
        try:
            return prepare_dataset(dataset_config(volumes_dir, cache_dir), seed=0)
        finally:
            shutil.rmtree(cache_dir)

    return build


def benchmark_build(section: Section, volumes_dir: Path, scratch: Path, repeats: int) -> None:
    pairs = volume_pairs(volumes_dir)
    announce("nibabel alone and liver-gan's cold build, in turn")
    load_with_nibabel(pairs)  # warm-up: both sides then read the files from the page cache
    turns = take_turns(
        {
            "nibabel": seconds_of(lambda: load_with_nibabel(pairs)),
            "build": seconds_of(cold_build(volumes_dir, scratch)),
        },
        repeats,
    )
    nibabel_seconds, build_seconds = turns["nibabel"], turns["build"]
    shapes = [nib.load(volume).shape for volume, _ in pairs]
    slices = sum(shape[2] for shape in shapes)
    floor = section.add(
        Figure(
            f"nibabel alone, serial ({len(pairs)} volumes + masks, {slices} slices)",
            "s",
            nibabel_seconds,
            limit="gzip inflate of the .nii.gz files, one core",
        )
    )
    build = section.add(
        Figure(
            "liver-gan cold cache build (dataset.num_workers=2)",
            "s",
            build_seconds,
            limit=(
                "the same inflate plus reorient, window and resize; serial below 1 GiB of input "
                "(PARALLEL_MIN_INPUT_BYTES), where spawning workers costs more than it saves"
            ),
        )
    )
    section.ratio("cold build / nibabel alone", build, floor, at_most=1.25)
    section.notes.append(
        "volumes: " + ", ".join(f"{shape[0]}x{shape[1]}x{shape[2]}" for shape in shapes) + " (int16 .nii.gz, CT-like)"
    )


def benchmark_warm_start(section: Section, volumes_dir: Path, scratch: Path, quick: bool, repeats: int) -> None:
    announce("warm starts")
    cfg = dataset_config(volumes_dir, scratch / "warm-cache")
    dataset = prepare_dataset(cfg, seed=0)
    warm = section.add(
        Figure(
            "liver-gan warm start: prepare_dataset cache hit",
            "s",
            repeat_seconds(lambda: prepare_dataset(cfg, seed=0), repeats),
            limit="reading the cached arrays and splitting by patient",
        )
    )
    section.check("warm dataset start (s)", warm.median, at_most=1.0)
    benchmark_reference_statistics(section, dataset, scratch, quick, repeats)


def benchmark_reference_statistics(
    section: Section, dataset: PreparedDataset, scratch: Path, quick: bool, repeats: int
) -> None:
    """Real-image FID statistics as evaluate_generator gets them: computed (an Inception pass), then cache hits."""
    count = QUICK_REFERENCE_IMAGES if quick else REFERENCE_IMAGES
    start = time.perf_counter()
    extractor = load_feature_extractor(inception_weights(), "cpu")
    load_seconds = time.perf_counter() - start

    def real_reference(cache_dir: Path, compute: bool) -> None:
        """Select the reals, key them and look them up, exactly as evaluate_generator does."""
        options = OmegaConf.create({"max_real": count, "batch_size": INCEPTION_BATCH, "cache_dir": str(cache_dir)})
        dataset_reals(dataset, RealPool.train, options, extractor if compute else warm_only).features

    def cache_missed(*args: object) -> np.ndarray:
        raise AssertionError("the reference-statistics cache missed on a warm start")

    warm_only = copy.copy(extractor)
    warm_only.features = cache_missed

    def cold() -> None:
        cache_dir = Path(tempfile.mkdtemp(prefix="reference-", dir=scratch))
        try:
            real_reference(cache_dir, compute=True)
        finally:
            shutil.rmtree(cache_dir)

    warm_dir = scratch / "reference-warm"
    real_reference(warm_dir, compute=True)
    cold_figure = section.add(
        Figure(
            f"reference statistics, cold ({count} real images through Inception)",
            "s",
            repeat_seconds(cold, repeats, warmup=0),
            limit="Inception forward passes (see the FID section); grows linearly with eval.max_real",
        )
    )
    warm_figure = section.add(
        Figure(
            "reference statistics, warm (cache hit, no Inception pass)",
            "s",
            repeat_seconds(lambda: real_reference(warm_dir, compute=False), repeats),
            limit="selecting and hashing the reals, reading mu, sigma (2048x2048 float64) and the features",
        )
    )
    section.ratio("reference statistics cold / warm", cold_figure, warm_figure)
    section.notes.append(
        f"a cold reference pass at the default eval.max_real=2048 would take about "
        f"{format_duration(cold_figure.median / count * 2048)}; the warm start skips it. "
        f"Loading the Inception weights took {load_seconds:.1f} s (once per run, cold or warm)"
    )


def benchmark_dataset(workdir: Path, quick: bool, repeats: int) -> Section:
    section = Section("Dataset build and warm start (512x512 int16 .nii.gz, 100-400 slices)")
    slice_counts = QUICK_SLICE_COUNTS if quick else SLICE_COUNTS
    volumes_dir = write_ct_like_volumes(workdir, slice_counts)
    scratch = Path(tempfile.mkdtemp(prefix="scratch-", dir=workdir))  # this run's own: runs may overlap
    try:
        benchmark_build(section, volumes_dir, scratch, repeats)
        benchmark_warm_start(section, volumes_dir, scratch, quick, repeats)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return section
