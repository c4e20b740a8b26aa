"""Read one CT volume and its segmentation as Hounsfield units and labels, in one orientation.

Real files differ (LPS or RAS affines, flipped axes, reversed slice order), so both arrays are
brought to nibabel's closest canonical orientation, RAS+: array axes run towards the patient's
right, anterior and superior, and axial slice ``k`` is the k-th from the feet up whatever the
file's affine. Slices are handed out the radiological way, as a radiologist reads them:
anterior at the top, the patient's right on the image's left.

``nibabel.as_closest_canonical`` would scale the whole volume to float64 before flipping it.
The same reorientation (``io_orientation`` + ``apply_orientation``, which it uses) is applied
here to the stored integers as a view, and only the kept slices are scaled to Hounsfield units
with the file's scl_slope / scl_inter, in float32.

Files are checked before and while they are read: a header that claims more voxels than the
file can hold, NaN or infinite voxels, and masks that are not whole labels are each refused in
one line naming the file. :func:`write_nifti` writes the files the phantom, the tests and the
benchmarks make.
"""

from __future__ import annotations

import contextlib
import logging
import math
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError
from nibabel.orientations import apply_orientation, io_orientation, ornt2axcodes

from liver_gan.data.labels import BACKGROUND_LABEL, LIVER_LABEL, TUMOR_LABEL
from liver_gan.errors import LiverGanError

log = logging.getLogger(__name__)

# DEFLATE emits at least 2 bits per 258-byte match, so no gzip stream inflates to more than
# about 1032 times its size (zlib's FAQ): a .nii.gz claiming more cannot hold its voxels.
GZIP_MAX_EXPANSION = 1032
# How far a float mask's values may lie from whole labels (resampling leaves 0.9999 and 2.0001).
MASK_TOLERANCE = 1e-3
# How far a segmentation's affine entries may lie from its volume's (mm): float32 header rounding
# stays far below it, while a shifted origin, another spacing or a rotation does not.
AFFINE_TOLERANCE_MM = 1e-3


@dataclass(frozen=True)
class CTScan:
    """One patient's volume and segmentation on the same canonical (X, Y, Z) voxel grid."""

    stored: np.ndarray  # volume voxels as stored in the file (unscaled), canonical view
    slope: float  # HU = stored * slope + inter (the file's scl_slope / scl_inter)
    inter: float
    labels: np.ndarray  # int8, 0 background / 1 liver / 2 tumor, canonical
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)  # mm per voxel along the canonical X, Y, Z

    @property
    def num_slices(self) -> int:
        return int(self.labels.shape[2])

    def hu_slices(self, indices: np.ndarray) -> np.ndarray:
        """Axial slices ``indices`` in Hounsfield units: float32 (n, rows, cols), radiological."""
        return _scaled_stack(self.stored, indices, self.slope, self.inter)

    def windowed_slices(self, indices: np.ndarray, level: float, width: float) -> np.ndarray:
        """Axial slices ``indices`` clipped to the HU window [level - width/2, level + width/2] and
        mapped to [-1, 1]: float32 (n, rows, cols), radiological.

        The window is folded into the file's scaling, so each slice is scaled and clipped while it
        is still in cache: the build's cost stays close to nibabel's own reading (BENCHMARKS.md).
        """
        gain = 2.0 / width
        return _scaled_stack(self.stored, indices, self.slope * gain, (self.inter - level) * gain, clip=1.0)

    def label_slices(self, indices: np.ndarray) -> np.ndarray:
        """Axial slices ``indices`` of the segmentation: int8 (n, rows, cols), radiological."""
        return _radiological_stack(self.labels, indices, np.int8)


def to_radiological(axial_slice: np.ndarray) -> np.ndarray:
    """A RAS+ slice ``[x, y]`` as an image with anterior up and the patient's right on the left.

    Rows run from anterior to posterior (reversed y), columns from the patient's right to
    their left (reversed x).
    """
    return axial_slice.T[::-1, ::-1]


def _scaled_stack(
    volume: np.ndarray, indices: np.ndarray, scale: float, offset: float, clip: float | None = None
) -> np.ndarray:
    """``volume * scale + offset`` (optionally clipped to [-clip, clip]) at ``indices``, slice by slice."""
    stack = np.empty((len(indices), volume.shape[1], volume.shape[0]), dtype=np.float32)
    for image, index in zip(stack, indices):
        np.multiply(to_radiological(volume[:, :, index]), np.float32(scale), out=image, casting="unsafe")
        image += np.float32(offset)
        if clip is not None:
            np.clip(image, -clip, clip, out=image)
    return stack


def _radiological_stack(volume: np.ndarray, indices: np.ndarray, dtype: type) -> np.ndarray:
    """Copy slice by slice: each copy reads one slice's memory in order, which is several times
    faster than one fancy index across a flipped, transposed view of the whole volume."""
    stack = np.empty((len(indices), volume.shape[1], volume.shape[0]), dtype=dtype)
    for image, index in zip(stack, indices):
        image[...] = to_radiological(volume[:, :, index])
    return stack


def read_scan(volume_path: Path, segmentation_path: Path) -> CTScan:
    """Read a volume and its segmentation; any unusable file raises :class:`LiverGanError`."""
    volume = _load(volume_path)
    segmentation = _load(segmentation_path)
    orientation = _check_same_grid(volume, volume_path, segmentation, segmentation_path)
    labels = _read_labels(segmentation, segmentation_path)
    _warn_on_empty_labels(labels, segmentation_path)
    with _reading(volume_path):
        stored = volume.dataobj.get_unscaled()
    slope, inter = float(volume.dataobj.slope), float(volume.dataobj.inter)
    _check_finite(stored, slope, inter, volume_path)
    return CTScan(
        stored=apply_orientation(stored, orientation),
        slope=slope,
        inter=inter,
        labels=apply_orientation(labels, orientation),
        spacing=canonical_spacing(volume.header.get_zooms()[:3], orientation),
    )


def _warn_on_empty_labels(labels: np.ndarray, path: Path) -> None:
    """A mask with no liver yields no liver slices; a tumor outside any liver is most likely a mislabelled file."""
    present = set(np.unique(labels).tolist())
    if LIVER_LABEL not in present and TUMOR_LABEL not in present:
        log.warning("%s: the segmentation is all background; this patient gives no liver slices", path)
    elif TUMOR_LABEL in present and LIVER_LABEL not in present:
        log.warning("%s: the segmentation marks tumor but no liver; check that its labels are 1 liver, 2 tumor", path)


def canonical_spacing(zooms: tuple[float, ...], orientation: np.ndarray) -> tuple[float, float, float]:
    """The file's voxel sizes reordered to the canonical axes its ``orientation`` maps them onto."""
    spacing = [0.0, 0.0, 0.0]
    for axis, (canonical_axis, _) in enumerate(orientation):
        spacing[int(canonical_axis)] = float(zooms[axis])
    return spacing[0], spacing[1], spacing[2]


def write_nifti(
    path: Path, stored: np.ndarray, affine: np.ndarray, slope: float | None = None, inter: float = 0.0
) -> Path:
    """Write ``stored`` as is (its dtype) as a NIfTI-1 file in scanner coordinates (millimetres,
    qform and sform code 1), as DICOM converters do; with ``slope``, the header's scl_slope and
    scl_inter say that the values are ``stored * slope + inter`` (e.g. HU from uint16)."""
    image = nib.Nifti1Image(stored, affine)
    if slope is not None:
        image.header.set_slope_inter(slope, inter)
    image.header.set_xyzt_units("mm", "sec")
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(image, path)
    return path


@contextlib.contextmanager
def _reading(path: Path) -> Iterator[None]:
    """Turn nibabel's and gzip's errors for a damaged file into one line naming the file."""
    try:
        yield
    except PermissionError as error:
        raise LiverGanError(
            f"{path}: cannot read this file: permission denied ({error.strerror}); "
            "ask its owner for read access, or copy the data somewhere you can read"
        ) from error
    except (ImageFileError, OSError, EOFError, ValueError, zlib.error) as error:
        reason = " ".join(str(error).split())
        raise LiverGanError(
            f"{path}: cannot read this NIfTI file ({type(error).__name__}: {reason}); "
            "it is truncated or damaged, so download or export it again"
        ) from error


def _load(path: Path) -> nib.Nifti1Image:
    with _reading(path):
        open(path, "rb").close()  # nibabel reports a file it may not open as of unknown type
        image = nib.load(str(path))
    if len(image.shape) != 3:
        raise LiverGanError(f"{path}: expected a 3-D CT volume or segmentation, found shape {image.shape}")
    if image.get_data_dtype().kind not in "uif":  # complex or RGB voxels are no Hounsfield units or labels
        raise LiverGanError(f"{path}: its voxels are {image.get_data_dtype()}, not real numbers; export it as a CT volume")
    _check_claimed_size(image, path)
    return image


def _check_claimed_size(image: nib.Nifti1Image, path: Path) -> None:
    """Refuse a header whose voxels cannot be in the file, before nibabel allocates them all.

    An uncompressed file must hold the header's offset plus every voxel; a gzipped one cannot
    inflate to more than :data:`GZIP_MAX_EXPANSION` times its size.
    """
    header = image.header
    claimed = int(header["vox_offset"]) + math.prod(header.get_data_shape()) * header.get_data_dtype().itemsize
    size = path.stat().st_size
    compressed = path.name.endswith(".gz")
    if claimed > (size * GZIP_MAX_EXPANSION if compressed else size):
        raise LiverGanError(
            f"{path}: cannot read this NIfTI file: its header claims {header.get_data_shape()} "
            f"{header.get_data_dtype()} voxels ({claimed / 2**20:,.1f} MiB), more than its "
            f"{size:,} {'compressed ' if compressed else ''}bytes can hold; it is truncated or damaged, "
            "so download or export it again"
        )


def _check_finite(stored: np.ndarray, slope: float, inter: float, path: Path) -> None:
    """NaN or infinite voxels would pass into the cache and make training diverge at step 1."""
    if not (math.isfinite(slope) and math.isfinite(inter)):
        raise LiverGanError(
            f"{path}: the header's scaling (scl_slope={slope}, scl_inter={inter}) is not finite; "
            "export the volume again"
        )
    # min and max propagate NaN and reach +-inf, without a mask the size of the volume.
    if stored.dtype.kind == "f" and not (np.isfinite(stored.min()) and np.isfinite(stored.max())):
        raise LiverGanError(
            f"{path}: the volume holds {np.count_nonzero(~np.isfinite(stored))} NaN or infinite voxels; "
            "export it again from the scanner data"
        )


def _check_same_grid(
    volume: nib.Nifti1Image, volume_path: Path, segmentation: nib.Nifti1Image, segmentation_path: Path
) -> np.ndarray:
    """Both files must share one voxel grid; returns the orientation that makes it canonical.

    A segmentation whose axes point elsewhere than its volume's is not silently reoriented on
    its own: that is how a mislabelled header would flip the mask against the anatomy.
    """
    if segmentation.shape != volume.shape:
        raise LiverGanError(
            f"{segmentation_path}: shape {segmentation.shape} differs from its volume {volume_path} "
            f"{volume.shape}; the segmentation must be on the volume's voxel grid"
        )
    orientation = io_orientation(volume.affine)
    segmentation_orientation = io_orientation(segmentation.affine)
    if not np.array_equal(orientation, segmentation_orientation):
        raise LiverGanError(
            f"{segmentation_path}: orientation {''.join(ornt2axcodes(segmentation_orientation))} differs "
            f"from its volume {volume_path} ({''.join(ornt2axcodes(orientation))}); "
            "write the segmentation with the volume's affine"
        )
    _check_same_affine(volume, volume_path, segmentation, segmentation_path)
    return orientation


def _check_same_affine(
    volume: nib.Nifti1Image, volume_path: Path, segmentation: nib.Nifti1Image, segmentation_path: Path
) -> None:
    """Same axes are not enough: a shifted origin, other spacing or a rotation puts the mask
    elsewhere in the body, so the affines must agree (within float rounding, as ``np.allclose``)."""
    if np.allclose(segmentation.affine, volume.affine, rtol=0.0, atol=AFFINE_TOLERANCE_MM):
        return
    difference = float(np.max(np.abs(segmentation.affine - volume.affine)))
    shift = np.round(segmentation.affine[:3, 3] - volume.affine[:3, 3], 3).tolist()
    spacings = [np.round(image.header.get_zooms()[:3], 3).tolist() for image in (segmentation, volume)]
    raise LiverGanError(
        f"{segmentation_path}: its affine differs from its volume {volume_path}'s by up to {difference:.3g} "
        f"(origin shifted by {shift} mm, spacing {spacings[0]} vs {spacings[1]} mm); "
        "the mask is on another physical grid: write the segmentation with the volume's affine"
    )


def _read_labels(segmentation: nib.Nifti1Image, path: Path) -> np.ndarray:
    """Segmentation labels as int8; float masks (0.0 / 1.0 / 1.9999) are rounded, never truncated,
    and refused where a value is not a whole label (0.5 from interpolation: liver or tumor?)."""
    with _reading(path):
        values = np.asanyarray(segmentation.dataobj)
    if values.dtype.kind == "f":
        values = _whole_labels(values, path)
    low, high = values.min(), values.max()
    if not (low >= BACKGROUND_LABEL and high <= TUMOR_LABEL):
        raise LiverGanError(
            f"{path}: segmentation values run from {low} to {high}; expected labels "
            f"0 (background), 1 (liver) and 2 (tumor) as in LiTS and MSD Task03_Liver"
        )
    return values.astype(np.int8)


def _whole_labels(values: np.ndarray, path: Path) -> np.ndarray:
    rounded = np.rint(values)
    if not np.isfinite(rounded.min() + rounded.max()):
        raise LiverGanError(
            f"{path}: segmentation values include NaN or infinity; expected labels 0 (background), "
            "1 (liver) and 2 (tumor): export the segmentation again"
        )
    off = np.abs(values - rounded) > MASK_TOLERANCE
    if off.any():
        raise LiverGanError(
            f"{path}: segmentation values are not whole labels ({np.count_nonzero(off)} voxels such as "
            f"{values[off].flat[0]:g}); an interpolated mask mixes liver and tumor: resample it with "
            "nearest-neighbour interpolation, or export it again"
        )
    return rounded
