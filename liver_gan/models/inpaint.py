"""The learned lesion inpainter (``model=inpaint``, ``lesion=learned``): pix2pix on liver-centred crops.

Isola et al. (2017): a U-Net generator maps a crop with a hole, and the masks saying where the hole
and the liver are, to the filled crop; a PatchGAN discriminator judges every patch of the result
against real crops; an L1 term inside the hole keeps the fill near the real tumor (the
training step is liver_gan/training/inpaint_step.py).  Both networks are MONAI's.

The generator's input is the :func:`conditioning` of a crop: three channels, the CT in [-1, 1]
with the hole set to 0, the hole and the liver as {0, 1} masks.  It returns the CT channel with
the hole filled and every pixel outside the hole exactly as given, so that whatever uses it
(the evaluation, ``Inpainter.fill``) changes only the hole.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from monai.networks.nets import PatchDiscriminator, UNet
from torch import Tensor, nn

from liver_gan.errors import LiverGanError
from liver_gan.models.common import LEAKY_SLOPE, require_positive

CONDITIONING_CHANNELS = 3  # the CT with its hole at 0, the hole, the liver
MIN_PATCH_GRID = 3  # crop side / 2**discriminator_layers: the PatchGAN's grid is 2 smaller


def conditioning(ct: Tensor, hole: Tensor, liver: Tensor) -> Tensor:
    """(N, 3, R, R) generator input from the (N, 1, R, R) CT in [-1, 1] and {0, 1} hole and liver masks."""
    hole, liver = hole.to(ct.dtype), liver.to(ct.dtype)
    return torch.cat([ct * (1 - hole), hole, liver], dim=1)


class InpaintGenerator(nn.Module):
    """A MONAI ``UNet`` whose output, squashed to [-1, 1], replaces the input's hole and nothing else.

    Called like every generator, ``generator(inputs, labels)``, with the :func:`conditioning` of
    the crops as ``inputs`` and no labels, so that the shared loop's sample grids and EMA copy
    work on it unchanged.
    """

    def __init__(self, channels: Sequence[int], strides: Sequence[int], num_res_units: int) -> None:
        super().__init__()
        self.unet = UNet(
            spatial_dims=2,
            in_channels=CONDITIONING_CHANNELS,
            out_channels=1,
            channels=tuple(channels),
            strides=tuple(strides),
            num_res_units=num_res_units,
            norm="instance",  # batch statistics would let one crop's fill depend on the others
        )

    def forward(self, inputs: Tensor, labels: Tensor | None = None) -> Tensor:
        known, hole = inputs[:, :1], inputs[:, 1:2]
        return known + torch.tanh(self.unet(inputs)) * hole  # the known CT is 0 inside the hole


class PatchCritic(nn.Module):
    """MONAI's ``PatchDiscriminator`` on a filled crop with its hole and liver masks: (N, P) patch logits."""

    def __init__(self, channels: int, layers: int) -> None:
        super().__init__()
        self.patches = PatchDiscriminator(
            spatial_dims=2,
            channels=channels,
            in_channels=CONDITIONING_CHANNELS,
            num_layers_d=layers,
            activation=("leakyrelu", {"negative_slope": LEAKY_SLOPE}),
            norm="instance",  # no batch statistics: real and fake crops can share one call (liver_gan/losses.py)
        )

    def forward(self, images: Tensor, labels: Tensor | None = None) -> Tensor:
        return self.patches(images)[-1].flatten(start_dim=1)


def critic_input(ct: Tensor, hole: Tensor, liver: Tensor) -> Tensor:
    """What the PatchGAN sees: a (filled or real) CT with the masks that say where the hole was."""
    return torch.cat([ct, hole.to(ct.dtype), liver.to(ct.dtype)], dim=1)


def build_inpainter(
    resolution: int,
    num_classes: int,
    image_channels: int,
    channels: Sequence[int],
    strides: Sequence[int],
    num_res_units: int,
    discriminator_channels: int,
    discriminator_layers: int,
    **training_options: object,
) -> tuple[InpaintGenerator, PatchCritic]:
    """``(generator, discriminator)`` for ``resolution``-pixel crops; ``training_options`` (the L1
    weight, the holes) are the training step's, not the networks'.

    Both networks see :data:`CONDITIONING_CHANNELS` channels whatever ``image_channels`` the slices
    carry; training checks that they carry the masks the holes are made from (inpaint_step.py).
    """
    if num_classes:
        raise LiverGanError("model=inpaint is not class-conditional: set model.conditional=false")
    require_positive("model.channels", channels)
    require_positive("model.strides", strides)
    if len(strides) != len(channels) - 1:
        raise LiverGanError(
            f"model.strides={list(strides)} needs one entry fewer than model.channels={list(channels)}"
        )
    require_positive("model.discriminator_channels", [discriminator_channels])
    # Each layer but the last halves the crop and the last two 4x4 convolutions take a pixel each.
    if discriminator_layers < 1 or resolution // 2**discriminator_layers < MIN_PATCH_GRID:
        raise LiverGanError(
            f"model.discriminator_layers={discriminator_layers} leaves no patches at dataset.resolution={resolution}: "
            f"use 1 to {max(1, (resolution // MIN_PATCH_GRID).bit_length() - 1)}"
        )
    if resolution % math.prod(strides):
        raise LiverGanError(
            f"dataset.resolution={resolution} is not divisible by the U-Net's total stride {math.prod(strides)} "
            f"(model.strides={list(strides)}): use fewer or smaller strides"
        )
    return (
        InpaintGenerator(channels, strides, num_res_units),
        PatchCritic(discriminator_channels, discriminator_layers),
    )
