"""Benchmarks of inserted tumors (issue 22), printed as measured; BENCHMARKS.md quotes them.

- ``throughput``: ``liver-gan-insert`` on synthetic 512x512xN volumes (read, paint, write .nii.gz),
  as the marginal rate between a run on one volume and a run on ``--volumes``, so that the
  tool's start-up (imports, Hydra) is not counted per volume;
- ``phantom``: the utility table real vs real + inserted vs label-free on the phantom.  A pipeline
  check only: the phantom's own tumors come from the same painter, so a gain there proves nothing
  about real data;
- ``lits117``: the one real LiTS patient cut into slabs of slices standing in for patients: HU
  histograms of its real tumors and of the inserted ones, and the two-sample AUC of liver-centred
  crops (a small CNN telling real tumor slices from inserted ones, on disjoint slabs);
- ``lits117-size``: lits117's real tumors against lesions painted by the current defaults, per
  diameter bin: each tumor's mean HU relative to the liver round it (what ``lesion.fit_from``
  measures) and the radial HU profile from outside the outline to the centre. The lesions are
  painted into lits117's own healthy liver (only small ones fit between its tumors) and, for every
  bin, into a flat liver at lits117's liver median (up to 6 lesions a painting, as many as fit).

    python benchmarks/insert.py                        # all three, about 5 minutes on 2 cores
    python benchmarks/insert.py --only lits117 --workdir outputs/benchmarks/insert
    python benchmarks/insert.py --only lits117-size    # about 1 minute of CPU
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from scipy import ndimage
from hydra import compose, initialize_config_dir

from liver_gan.config import register_configs
from liver_gan.data.nifti import read_scan, write_nifti
from liver_gan.downstream.inserted import load_inserted
from liver_gan.data.labels import TUMOR
from liver_gan.downstream.realism import both_splits, two_sample_auc
from liver_gan.downstream.report import format_utility_table, utility_report
from liver_gan.lesions.config import ProceduralLesionConfig
from liver_gan.lesions.fit import measure_tumors, tumor_surroundings
from liver_gan.lesions.procedural import paint_patient

REPO = Path(__file__).resolve().parents[1]
LITS117 = REPO.parent / "shared" / "data" / "real-ct" / "lits117"  # ../shared beside the checkout
PHANTOM_CAVEAT = (
    "pipeline check only: the phantom's tumors come from the same painter as the inserted ones, "
    "so a gain here proves nothing about real data"
)
HU_BINS = np.arange(-50, 226, 25)
DIAMETER_BINS_MM = ((5.0, 10.0), (10.0, 20.0), (20.0, 47.0))
# Radial profile: distance of a voxel's centre from the nearest voxel on the other side of the
# outline (mm), outside (negative) and inside; the outline lies half a voxel from the first ones.
PROFILE_MM = ((-2.5, -1.5), (-1.5, 0.0), (0.0, 1.5), (1.5, 2.5), (2.5, 3.5), (3.5, 5.0), (5.0, np.inf))


def insert(run_dir: Path, *overrides: str) -> float:
    """Run liver-gan-insert into ``run_dir``; its wall time in seconds."""
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", "from liver_gan.cli.insert import main; main()", f"hydra.run.dir={run_dir}", *overrides],
        check=True, capture_output=True, text=True,
    )
    return time.perf_counter() - start


def utility_config(overrides: list[str]):
    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(config_name="utility", overrides=overrides)


def synthetic_512(root: Path, count: int, slices: int) -> Path:
    """``count`` abdominal-like 512x512x``slices`` int16 volumes: body, an ellipsoidal liver with noise."""
    root.mkdir(parents=True, exist_ok=True)
    x, y, z = np.meshgrid(np.arange(512), np.arange(512), np.arange(slices), indexing="ij", sparse=True)
    body = ((x - 256) / 230) ** 2 + ((y - 256) / 180) ** 2 <= 1
    liver = ((x - 340) / 110) ** 2 + ((y - 280) / 90) ** 2 + ((z - slices / 2) / (0.45 * slices)) ** 2 <= 1
    affine = np.diag([0.75, 0.75, 2.5, 1.0])
    for patient in range(count):
        rng = np.random.default_rng(patient)
        hu = np.where(body, -20, -1000) + np.zeros((1, 1, slices))
        hu = np.where(liver, 110, hu) + rng.normal(0, 12, (512, 512, slices))
        write_nifti(root / f"volume-{patient}.nii.gz", np.rint(hu).astype(np.int16), affine)
        write_nifti(root / f"segmentation-{patient}.nii.gz", np.broadcast_to(liver, hu.shape).astype(np.uint8), affine)
    return root


def throughput(workdir: Path, volumes: int, slices: int) -> None:
    times = {}
    for count in (1, volumes):
        source = synthetic_512(workdir / f"source-{count}", count, slices)
        run_dir = workdir / f"insert-{count}"
        shutil.rmtree(run_dir, ignore_errors=True)
        times[count] = insert(run_dir, "dataset=lits", f"dataset.root={source}", "dataset.val_fraction=0",
                              f"dataset.cache_dir={workdir / 'cache'}")
    rate = (volumes - 1) / (times[volumes] - times[1])
    print(f"## insertion throughput: 512x512x{slices} int16 volumes, procedural lesions, read + paint + write .nii.gz")
    print(f"liver-gan-insert on 1 volume: {times[1]:.1f} s; on {volumes}: {times[volumes]:.1f} s")
    print(f"marginal rate: {rate:.3f} volumes/s ({1 / rate:.1f} s per volume)\n")


def phantom(workdir: Path, epochs: int, resolution: int) -> None:
    run_dir = workdir / "phantom-insert"
    shutil.rmtree(run_dir, ignore_errors=True)
    seconds = insert(run_dir, "dataset=phantom", f"dataset.root={workdir / 'phantom'}", f"dataset.cache_dir={workdir / 'cache'}",
                     "dataset.val_fraction=0.25", "dataset.crop=liver", f"dataset.resolution={resolution}")
    cfg = utility_config([f"inserted={run_dir}", "task=segmentation", "ratios=[0.5,1.0]", "seeds=[0,1,2]",
                          f"segmenter.epochs={epochs}", "device=cpu"])
    start = time.perf_counter()
    report = utility_report(cfg, torch.device("cpu"))
    print(f"## phantom: utility of inserted tumors ({PHANTOM_CAVEAT})")
    print(f"liver-gan-insert on the phantom (16 volumes, crop=liver, {resolution} px): {seconds:.1f} s; "
          f"utility (4 arms x 3 seeds, segmenter.epochs={epochs}): {time.perf_counter() - start:.0f} s")
    print(f"inserted tumor slices: {report['inserted']['tumor_slices']}, of them label-free: "
          f"{report['inserted']['label_free_tumor_slices']}")
    print(format_utility_table(report) + "\n")


def lits117_slabs(lits117_dir: Path, root: Path, slab: int) -> Path:
    """LiTS patient 117 cut along z into slabs of ``slab`` slices: volume-k / segmentation-k."""
    root.mkdir(parents=True)
    volume = nib.load(str(lits117_dir / "volume-117.nii.gz"))
    labels = nib.load(str(lits117_dir / "segmentation-117.nii.gz"))
    hu, mask = np.asanyarray(volume.dataobj), np.asanyarray(labels.dataobj)
    for number, start in enumerate(range(0, hu.shape[2] - slab + 1, slab), start=1):
        affine = volume.affine.copy()
        affine[:3, 3] = volume.affine[:3, :3] @ np.array([0, 0, start]) + volume.affine[:3, 3]
        write_nifti(root / f"volume-{number}.nii.gz", np.ascontiguousarray(hu[:, :, start : start + slab]), affine)
        write_nifti(root / f"segmentation-{number}.nii.gz", np.ascontiguousarray(mask[:, :, start : start + slab]), affine)
    return root


def tumor_hu(root: Path, painted_only_against: Path | None = None) -> np.ndarray:
    """HU of the tumor voxels of every pair under ``root``; with a source folder, only the voxels
    that are tumor in ``root`` but not in the source (the painted ones)."""
    values = []
    for segmentation in sorted(root.glob("segmentation-*.nii.gz")):
        labels = np.asanyarray(nib.load(str(segmentation)).dataobj)
        hu = nib.load(str(segmentation.with_name(segmentation.name.replace("segmentation", "volume")))).get_fdata()
        tumor = labels == 2
        if painted_only_against is not None:
            tumor &= np.asanyarray(nib.load(str(painted_only_against / segmentation.name)).dataobj) != 2
        values.append(hu[tumor])
    return np.concatenate(values)


def histogram_rows(name: str, hu: np.ndarray) -> str:
    counts, _ = np.histogram(np.clip(hu, HU_BINS[0], HU_BINS[-1] - 1), HU_BINS)
    q1, median, q3 = np.percentile(hu, [25, 50, 75])
    shares = " ".join(f"{share:5.1%}" for share in counts / counts.sum())
    return f"{name:<9} {len(hu):>8}  median {median:6.1f}  IQR {q1:6.1f}-{q3:6.1f}  | {shares}"


def lits117(lits117_dir: Path, workdir: Path, slab: int) -> None:
    source = workdir / f"lits117-slabs-{slab}"
    if not source.exists():
        lits117_slabs(lits117_dir, source, slab)
    run_dir = workdir / "lits117-insert"
    shutil.rmtree(run_dir, ignore_errors=True)
    insert(run_dir, "dataset=lits", f"dataset.root={source}", f"dataset.cache_dir={workdir / 'cache'}",
           "dataset.val_fraction=0.25", "dataset.resolution=64")
    print(f"## lits117 cut into slabs of {slab} slices standing in for patients")
    print("tumor HU   voxels                                  | share per bin of 25 HU from "
          f"{HU_BINS[0]} to {HU_BINS[-1]} (ends clipped)")
    print(histogram_rows("real", tumor_hu(source)))
    print(histogram_rows("inserted", tumor_hu(run_dir, painted_only_against=source)))
    data = load_inserted(run_dir, crop="liver")
    real = both_splits(data.real.train, data.real.val).of_class(TUMOR)
    classifier = utility_config([]).classifier
    aucs = [two_sample_auc(real, data.tumor, classifier, seed, torch.device("cpu")) for seed in (0, 1, 2)]
    print(f"two-sample AUC, liver-centred 64 px crops, {len(real)} real tumor slices vs {len(data.tumor)} inserted "
          f"(which also show the slab's real tumors), train/test on disjoint slabs: "
          f"{statistics.fmean(aucs):.3f} ± {statistics.stdev(aucs):.3f} over seeds 0-2 ({', '.join(f'{a:.3f}' for a in aucs)})\n")


def radial_profiles(hu: np.ndarray, labels: np.ndarray, spacing: tuple[float, float, float]) -> list[tuple[float, list]]:
    """Per tumor (label 2 component) with healthy liver round it: (diameter mm, [HU values relative
    to that liver's median per PROFILE_MM bin, liver only outside])."""
    profiles = []
    for near in tumor_surroundings(labels, spacing):
        signed = np.where(near.tumor, ndimage.distance_transform_edt(near.tumor, sampling=spacing), -near.outside_mm)
        relative = hu[near.box] - np.median(hu[near.box][near.shell])
        counted = near.tumor | (labels[near.box] == 1)
        profiles.append((near.diameter_mm, [relative[(signed > lo) & (signed <= hi) & counted] for lo, hi in PROFILE_MM]))
    return profiles


def size_rows(name: str, hu: np.ndarray, labels: np.ndarray, spacing: tuple[float, float, float]) -> list[str]:
    """One row per diameter bin: tumors, mean, std and standard error of their contrast (fit_from's measure), radial profile."""
    measures = measure_tumors(hu, labels, spacing, DIAMETER_BINS_MM[0][0])
    profiles = radial_profiles(hu, labels, spacing)
    rows = []
    for lo, hi in DIAMETER_BINS_MM:
        contrasts = [m.contrast_hu for m in measures if lo <= m.diameter_mm < hi]
        bins = [np.concatenate([p[1][k] for p in profiles if lo <= p[0] < hi] or [np.zeros(0)]) for k in range(len(PROFILE_MM))]
        profile = " ".join(f"{b.mean():6.1f}" if b.size else "     -" for b in bins)
        spread = (f"{statistics.fmean(contrasts):6.1f} {statistics.pstdev(contrasts):5.1f} "
                  f"{statistics.pstdev(contrasts) / np.sqrt(len(contrasts)):5.1f}" if contrasts else f"{'-':>6} {'-':>5} {'-':>5}")
        rows.append(f"{name:<26} {lo:4.0f}-{hi:<3.0f} {len(contrasts):>3}  {spread}  | {profile}")
    return rows


def flat_liver(hu_median: float, hu_std: float = 12.0, shape: tuple[int, int, int] = (150, 130, 120)) -> tuple[np.ndarray, np.ndarray]:
    """An ellipsoid liver of 1 mm voxels with room for 47 mm lesions: HU of the median given and scanner
    noise of ``hu_std``, smooth over 1 mm (no voxel reaches the vessel threshold, 50 HU above)."""
    rng = np.random.default_rng(0)
    x, y, z = np.meshgrid(*[np.arange(n) - n / 2 for n in shape], indexing="ij", sparse=True)
    liver = (x / 70) ** 2 + (y / 60) ** 2 + (z / 55) ** 2 < 1
    noise = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), 1.0)
    hu = np.where(liver, hu_median + hu_std * noise / noise.std(), -80.0).astype(np.float32)
    return hu, liver.astype(np.int8)


def painted_labels(labels: np.ndarray, painted: np.ndarray) -> np.ndarray:
    """Labels with only the painted lesions as tumor (the source's tumors are set apart as background)."""
    return np.where(painted, 2, np.where(labels == 2, 0, labels)).astype(np.int8)


def lits117_size(lits117_dir: Path, seeds: int) -> None:
    scan = read_scan(lits117_dir / "volume-117.nii.gz", lits117_dir / "segmentation-117.nii.gz")
    hu, labels, spacing = (scan.stored * scan.slope + scan.inter).astype(np.float32), scan.labels, scan.spacing
    cfg = ProceduralLesionConfig()
    print(f"## lits117 tumors by size: real vs painted (contrast_hu={cfg.contrast_hu:g}, edge_mm={cfg.edge_mm:g}, "
          f"texture_hu={cfg.texture_hu:g}; seeds 0-{seeds - 1})")
    print("HU relative to the median of the healthy liver 2-6 mm round each tumor; profile by the distance (mm) of "
          "voxel centres from the other side of the outline")
    print(f"{'tumors':<26} {'diam mm':<8} {'n':>3}    mean   std  s.e.  | " + " ".join(f"{f'{lo:g}..{hi:g}':>6}" for lo, hi in PROFILE_MM))
    for row in size_rows("real (manual labels)", hu, labels, spacing):
        print(row)
    inserted = [paint_patient(hu, labels, spacing, cfg, np.random.default_rng(seed), "lits117") for seed in range(seeds)]
    stacked = (np.concatenate([p.hu for p in inserted]), np.concatenate([painted_labels(labels, p.tumor) for p in inserted]))
    for row in size_rows("painted into lits117", *stacked, spacing):
        print(row)
    flat_hu, flat_labels = flat_liver(float(np.median(hu[labels == 1])))
    paintings = []
    for lo, hi in DIAMETER_BINS_MM:
        sized = dataclasses.replace(cfg, count_min=6, count_max=6, diameter_mm_min=lo, diameter_mm_max=hi,
                                    diameter_mm_median=float(np.sqrt(lo * hi)))
        for seed in range(seeds):
            painting = paint_patient(flat_hu, flat_labels, (1.0, 1.0, 1.0), sized, np.random.default_rng(seed), "flat liver")
            paintings.append((painting.hu, painted_labels(flat_labels, painting.tumor)))
    stacked = (np.concatenate([p[0] for p in paintings]), np.concatenate([p[1] for p in paintings]))
    for row in size_rows("painted into a flat liver", *stacked, (1.0, 1.0, 1.0)):
        print(row)
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=["throughput", "phantom", "lits117", "lits117-size"],
                        default=["throughput", "phantom", "lits117", "lits117-size"])
    parser.add_argument("--workdir", type=Path, default=Path("outputs/benchmarks/insert"))
    parser.add_argument("--volumes", type=int, default=3, help="volumes of the throughput run")
    parser.add_argument("--slices", type=int, default=32, help="axial slices of each 512x512 volume")
    parser.add_argument("--epochs", type=int, default=3, help="segmenter.epochs of the phantom's utility")
    parser.add_argument("--resolution", type=int, default=32, help="dataset.resolution of the phantom's utility")
    parser.add_argument("--slab", type=int, default=16, help="slices per lits117 slab (one stand-in patient)")
    parser.add_argument("--seeds", type=int, default=4, help="paintings per source of the lits117-size table")
    parser.add_argument("--lits117", type=Path, default=LITS117, help="the folder of volume-117 / segmentation-117")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; load average {Path('/proc/loadavg').read_text().split()[:3]}\n")
    if "throughput" in args.only:
        throughput(args.workdir, args.volumes, args.slices)
    if "phantom" in args.only:
        phantom(args.workdir, args.epochs, args.resolution)
    if "lits117" in args.only:
        lits117(args.lits117, args.workdir, args.slab)
    if "lits117-size" in args.only:
        lits117_size(args.lits117, args.seeds)


if __name__ == "__main__":
    main()
