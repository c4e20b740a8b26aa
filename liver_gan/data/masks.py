"""Label maps as image channels: how a slice's segmentation travels with it (``dataset.masks=true``).

A slice tensor then has :data:`MASK_CHANNELS` channels after its CT channel: the liver (labels 1
and 2) and the tumor (label 2) as nested binary masks, -1 outside and 1 inside, on the CT's scale.
Every model family generates them as extra output channels, jointly with the image, so nothing
downstream needs to know how a family works: :func:`decode` thresholds the channels at 0 back to
a label map of 0 background, 1 liver, 2 tumor.  Nested masks rather than a one-hot encoding keep
each channel a plain image, and a tumor is always inside the liver as it is in LiTS.

Resizing a label map is a vote, never an interpolation: a pixel of the resized map is liver (or
tumor) when at least half of its footprint in the source slice is (the nested masks' area
fractions, ``F.interpolate(mode="area")``), so labels stay whole and a block of tumor larger than
an output pixel survives as tumor.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from liver_gan.data.labels import BACKGROUND_LABEL, LIVER_LABEL, TUMOR_LABEL

CT_CHANNEL = 0
MASK_CHANNELS = 2  # liver (labels >= 1), tumor (label 2)
MASK_LABELS = (LIVER_LABEL, TUMOR_LABEL)  # the smallest label each mask channel covers
VOTE = 0.5  # area fraction of a resized pixel that makes it liver or tumor

# Overlay colours (RGB in [0, 1]) and how much they tint the grey CT.
LIVER_COLOUR = (0.1, 0.9, 0.2)
TUMOR_COLOUR = (1.0, 0.15, 0.1)
OVERLAY_ALPHA = 0.45


def image_channels(masks: bool) -> int:
    """Channels of a slice tensor: the CT, plus the mask channels with ``dataset.masks=true``."""
    return 1 + (MASK_CHANNELS if masks else 0)


def has_masks(images: Tensor) -> bool:
    return images.shape[1] == 1 + MASK_CHANNELS


def ct(images: Tensor) -> Tensor:
    """The CT channel of (N, C, R, R) slices, as (N, 1, R, R): what Inception and the metrics see."""
    return images[:, CT_CHANNEL : CT_CHANNEL + 1]


def encode(label_maps: Tensor) -> Tensor:
    """(N, R, R) labels 0/1/2 -> float32 (N, 2, R, R) nested masks in {-1, 1}."""
    masks = [label_maps >= label for label in MASK_LABELS]
    return torch.stack(masks, dim=1).float().mul(2).sub(1)


def decode(mask_channels: Tensor) -> Tensor:
    """(N, 2, R, R) mask channels (generated or encoded) -> int64 (N, R, R) labels 0/1/2.

    A pixel is tumor where the tumor channel is above 0, else liver where the liver channel is.
    """
    liver, tumor = mask_channels[:, 0] > 0, mask_channels[:, 1] > 0
    labels = torch.full(liver.shape, BACKGROUND_LABEL, dtype=torch.int64, device=mask_channels.device)
    labels[liver] = LIVER_LABEL
    labels[tumor] = TUMOR_LABEL
    return labels


def label_maps(images: Tensor) -> Tensor:
    """The label maps of (N, 1 + MASK_CHANNELS, R, R) slices, as int64 (N, R, R)."""
    if not has_masks(images):
        raise ValueError(f"slices of {images.shape[1]} channels carry no masks (dataset.masks=false)")
    return decode(images[:, CT_CHANNEL + 1 :].float())


def resize_labels(labels: np.ndarray, resolution: int) -> np.ndarray:
    """(n, s, s) int8 label maps -> (n, R, R) int8 by the area vote of each nested mask."""
    if labels.shape[1:] == (resolution, resolution):
        return labels.astype(np.int8)
    nested = torch.from_numpy(np.stack([labels >= label for label in MASK_LABELS], axis=1)).float()
    fractions = F.interpolate(nested, size=(resolution, resolution), mode="area")
    voted = (fractions >= VOTE).to(torch.int8)
    return (voted[:, 0] * LIVER_LABEL + voted[:, 1] * (TUMOR_LABEL - LIVER_LABEL)).numpy()


def overlay(images: Tensor) -> Tensor:
    """(N, 1 + MASK_CHANNELS, R, R) slices in [-1, 1] -> (N, 3, R, R) RGB in [-1, 1]: the grey CT
    with the liver tinted green and the tumor red, for sample grids."""
    grey = ct(images).float().add(1).div(2).clamp(0, 1).expand(-1, 3, -1, -1)
    labels = label_maps(images)
    rgb = grey.clone()
    for label, colour in ((LIVER_LABEL, LIVER_COLOUR), (TUMOR_LABEL, TUMOR_COLOUR)):
        where = (labels == label).unsqueeze(1).expand(-1, 3, -1, -1)
        tint = torch.tensor(colour, device=images.device).view(1, 3, 1, 1).expand_as(grey)
        blended = (1 - OVERLAY_ALPHA) * grey + OVERLAY_ALPHA * tint
        rgb[where] = blended[where]
    return rgb.mul(2).sub(1)
