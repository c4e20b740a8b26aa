"""Learned lesions (``lesion=learned``): a trained inpainter (``model=inpaint``) fills a tumor region.

The painter gives the region (its shape comes from the procedural generator); the model gives
texture and edge, learned from real tumor slices.  :meth:`Inpainter.fill` works slice by slice
over the axial slices the region touches, on the same liver-centred crops the model trained on
(``dataset.crop=liver`` with the run's margin and smallest size, liver_gan/data/slicing.py):

1. cut the slice (radiological view, as liver_gan/data/nifti.py reads it) to the square around its
   liver, window it and resize it to the model's resolution;
2. make the hole as in training: the region at that resolution (every pixel it touches), grown by
   ``model.hole_dilation`` pixels within the liver;
3. fill the hole, map the result back to HU and to the square's size;
4. paste the filled values into the volume inside the region only, so that the output differs
   from the input exactly there (the painter's "label 2 exactly where HU changed").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import nn

from liver_gan.data.nifti import to_radiological
from liver_gan.data.slicing import crop_square, liver_square, resize
from liver_gan.device import resolve_device
from liver_gan.errors import LiverGanError
from liver_gan.models.inpaint import conditioning
from liver_gan.models.registry import build_inpainting, is_inpainter
from liver_gan.runs import find_checkpoint
from liver_gan.training.checkpoint import EMA_KEY, load_checkpoint
from liver_gan.training.inpaint_step import tumor_holes

FILL_BATCH = 64  # crops per generator call


@dataclass(frozen=True)
class SliceCrop:
    """One axial slice's part of a fill: where its square lies and the crop's model inputs."""

    index: int  # axial slice in the volume
    square: tuple[int, int, int]  # (top, left, side) in the radiological slice
    ct: np.ndarray  # (R, R) windowed crop in [-1, 1]
    liver: np.ndarray  # (R, R) bool
    region: np.ndarray  # (R, R) bool: every pixel the region touches


class Inpainter:
    """A trained inpainter (eval mode) with the crop and window options of the run that trained it."""

    def __init__(self, generator: nn.Module, cfg: DictConfig, device: torch.device) -> None:
        self.generator = generator.to(device).eval()
        self.device = device
        self.resolution = int(cfg.dataset.resolution)
        self.level, self.width = float(cfg.dataset.window.level), float(cfg.dataset.window.width)
        self.margin, self.min_fraction = float(cfg.dataset.crop_margin), float(cfg.dataset.crop_min_fraction)
        self.hole_dilation = int(cfg.model.hole_dilation)

    def fill(
        self,
        hu: np.ndarray,
        region: np.ndarray,
        liver: np.ndarray,
        spacing: tuple[float, float, float],
        rng: np.random.Generator,
    ) -> np.ndarray:
        """A new float32 HU volume equal to ``hu`` outside ``region`` and filled by the model inside it.

        ``hu``, ``region`` and ``liver`` are (X, Y, Z) in nibabel's canonical orientation.  The
        model's crops are sized to each slice's liver, as in training, so ``spacing`` only has to
        be the volume's own; and the generator is deterministic, so ``rng`` (the painter's
        stream) draws nothing: the same region always gets the same fill.
        """
        region, liver = np.asarray(region, dtype=bool), np.asarray(liver, dtype=bool)
        if region.shape != hu.shape or liver.shape != hu.shape:
            raise LiverGanError(
                f"learned fill: hu {hu.shape}, region {region.shape} and liver {liver.shape} must have one shape"
            )
        filled = np.array(hu, dtype=np.float32)
        crops = [self._crop(hu, region, liver, index) for index in np.flatnonzero(region.any(axis=(0, 1)))]
        for start in range(0, len(crops), FILL_BATCH):
            batch = crops[start : start + FILL_BATCH]
            for crop, values in zip(batch, self._fill_crops(batch)):
                self._paste(filled, region, crop, values)
        return filled

    def _crop(self, hu: np.ndarray, region: np.ndarray, liver: np.ndarray, index: int) -> SliceCrop:
        """Slice ``index``'s square around its liver (and the region), windowed and resized."""
        image = to_radiological(hu[:, :, index])
        inside = to_radiological(region[:, :, index])
        organ = to_radiological(liver[:, :, index]) | inside  # a tumor is part of its liver, as in LiTS
        min_side = math.ceil(self.min_fraction * min(image.shape))
        square = liver_square(organ, self.margin, min_side)
        windowed = np.clip((image - self.level) / (self.width / 2), -1.0, 1.0).astype(np.float32)
        ct = resize(crop_square(windowed, square)[None], self.resolution)[0]
        return SliceCrop(
            int(index),
            square,
            ct,
            self._coverage(crop_square(organ.astype(np.float32), square, 0.0)) >= 0.5,  # the dataset's area vote
            self._coverage(crop_square(inside.astype(np.float32), square, 0.0)) > 0,
        )

    def _coverage(self, mask: np.ndarray) -> np.ndarray:
        """The fraction of each model pixel that a full-resolution {0, 1} mask covers."""
        resized = F.interpolate(torch.from_numpy(mask)[None, None], size=(self.resolution,) * 2, mode="area")
        return resized[0, 0].numpy()

    @torch.no_grad()
    def _fill_crops(self, crops: list[SliceCrop]) -> np.ndarray:
        """The model's (n, R, R) fills of the crops' holes, in HU."""
        ct = torch.from_numpy(np.stack([crop.ct for crop in crops]))[:, None].to(self.device)
        liver = torch.from_numpy(np.stack([crop.liver for crop in crops]))[:, None].float().to(self.device)
        region = torch.from_numpy(np.stack([crop.region for crop in crops]))[:, None].float().to(self.device)
        hole = tumor_holes(region, liver, self.hole_dilation)
        filled = self.generator(conditioning(ct, hole, liver))[:, 0].float().cpu().numpy()
        return filled * (self.width / 2) + self.level

    def _paste(self, volume: np.ndarray, region: np.ndarray, crop: SliceCrop, values: np.ndarray) -> None:
        """Put a crop's fill, resized to its square, into ``volume``'s slice inside the region only.

        The square covers the slice's region (it is grown from the liver and the region), so every
        region pixel gets a value.  ``to_radiological`` returns a view: writing into it writes the volume.
        """
        top, left, side = crop.square
        upsampled = resize(values[None].astype(np.float32), side)[0]
        view = to_radiological(volume[:, :, crop.index])
        rows = slice(max(top, 0), min(top + side, view.shape[0]))
        cols = slice(max(left, 0), min(left + side, view.shape[1]))
        inside = to_radiological(region[:, :, crop.index])[rows, cols]
        target = view[rows, cols]
        target[inside] = upsampled[rows.start - top : rows.stop - top, cols.start - left : cols.stop - left][inside]

def load_inpainter(checkpoint: str | Path, device: str = "auto") -> Inpainter:
    """The inpainter of a ``model=inpaint`` run (its run dir or a checkpoint .pt), its EMA copy when it kept one.

    The checkpoint goes through liver-gan's validating loader; one of another family is refused in one line.
    """
    path = find_checkpoint(Path(checkpoint))
    state = load_checkpoint(path)
    cfg = state["config"]
    if not is_inpainter(cfg):
        raise LiverGanError(
            f"lesion.checkpoint={checkpoint}: {path} is a run of model._target_={cfg.model._target_}, not of the "
            "inpainter; train one with liver-gan-train model=inpaint dataset.crop=liver dataset.masks=true"
        )
    generator, _ = build_inpainting(cfg)
    generator.load_state_dict(state[EMA_KEY] if EMA_KEY in state else state["generator"])
    return Inpainter(generator, cfg, resolve_device(device))
