"""The phantom on disk: one folder per configuration, written once, as LiTS-format NIfTI pairs
stored the ways real files come."""

from __future__ import annotations

import hashlib
import json
from dataclasses import fields
from pathlib import Path

import numpy as np
from nibabel.orientations import apply_orientation, axcodes2ornt, inv_ornt_aff, ornt_transform

from liver_gan.atomic import build_once
from liver_gan.data.nifti import write_nifti
from liver_gan.data.phantom.scan import Scan, synthesize_scan
from liver_gan.data.schema import PhantomConfig
from liver_gan.errors import LiverGanError
from liver_gan.progress import progress

# Bump when the drawing changes, so that phantoms written by an older generator are not reused.
GENERATOR_VERSION = 1

MIN_IN_PLANE = 48
MIN_SLICES = 8

# How volume N is stored, cycling over N, so that every path of the reader is exercised.
STORED_AXCODES = (("R", "A", "S"), ("L", "P", "S"), ("L", "P", "I"))


def phantom_key(cfg: PhantomConfig) -> str:
    """A short hash of every phantom parameter and of the generator version."""
    params = {item.name: getattr(cfg, item.name) for item in fields(PhantomConfig)}
    params["generator_version"] = GENERATOR_VERSION
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]


def write_phantom(root: Path, cfg: PhantomConfig) -> Path:
    """Write (once) the phantom for ``cfg`` under ``root`` and return its directory.

    The directory is named by :func:`phantom_key` and made by :func:`liver_gan.atomic.build_once`,
    so concurrent jobs of a sweep share one copy and never see half of one.
    """
    _check_config(cfg)
    directory = phantom_folder(root, cfg)

    def draw(building: Path) -> None:
        for index in progress(range(cfg.num_volumes), "phantom synthesis", cfg.num_volumes, "volumes"):
            _save_pair(building, index, synthesize_scan(cfg, index))

    build_once(directory, draw, is_complete=lambda path: is_complete_phantom(path, cfg))
    return directory


def _check_config(cfg: PhantomConfig) -> None:
    if cfg.num_volumes < 1:
        raise LiverGanError(f"dataset.phantom.num_volumes={cfg.num_volumes}: set it to 1 or more")
    if cfg.in_plane < MIN_IN_PLANE:
        raise LiverGanError(
            f"dataset.phantom.in_plane={cfg.in_plane} is too small to draw the anatomy: "
            f"use at least {MIN_IN_PLANE}"
        )
    if cfg.min_slices < MIN_SLICES:
        raise LiverGanError(
            f"dataset.phantom.min_slices={cfg.min_slices} leaves the liver too few slices: "
            f"use at least {MIN_SLICES}"
        )
    if cfg.max_slices < cfg.min_slices:
        raise LiverGanError(
            f"dataset.phantom.max_slices={cfg.max_slices} is below "
            f"min_slices={cfg.min_slices}: raise max_slices"
        )


def phantom_folder(root: Path, cfg: PhantomConfig) -> Path:
    """Where :func:`write_phantom` puts the phantom for ``cfg`` under ``root``."""
    return Path(root) / f"phantom-{phantom_key(cfg)}"


def is_complete_phantom(directory: Path, cfg: PhantomConfig) -> bool:
    return all(
        (directory / f"{kind}-{index}.nii.gz").is_file()
        for index in range(cfg.num_volumes)
        for kind in ("volume", "segmentation")
    )


def _save_pair(directory: Path, index: int, scan: Scan) -> None:
    """Write ``volume-N.nii.gz`` and ``segmentation-N.nii.gz`` in the orientation and storage
    type this patient is assigned (see ``STORED_AXCODES``)."""
    transform = ornt_transform(
        axcodes2ornt(("R", "A", "S")), axcodes2ornt(STORED_AXCODES[index % len(STORED_AXCODES)])
    )
    affine = scan.affine @ inv_ornt_aff(transform, scan.hu.shape)
    hu = apply_orientation(scan.hu, transform)
    volume = directory / f"volume-{index}.nii.gz"
    if index % 2 == 1:  # unsigned with an intercept, as many DICOM converters store CT
        write_nifti(volume, (hu.astype(np.int32) + 1024).astype(np.uint16), affine, slope=1.0, inter=-1024.0)
    else:
        write_nifti(volume, hu, affine)
    write_nifti(directory / f"segmentation-{index}.nii.gz", apply_orientation(scan.labels, transform), affine)
