"""One training step of the lesion inpainter (``model=inpaint``, liver_gan/models/inpaint.py): pix2pix.

Each real crop carries its liver and tumor masks (``dataset.masks=true``).  Its hole is the tumor
grown by ``model.hole_dilation`` pixels, so that the model learns the tumor's edge and the liver
just around it, and with probability ``model.blob_probability`` also random blobs inside the
liver (smooth noise above ``model.blob_threshold``), so that it learns to fill holes of other
shapes than the ones the data holds.  Then, as in pix2pix:

1. the generator fills the hole;
2. the PatchGAN learns to tell real crops from filled ones (``cfg.loss``, the GANs' losses), both
   with their hole and liver masks, the filled ones detached;
3. the generator learns to fool the updated PatchGAN on the same filled crops, plus
   ``model.l1_weight`` times the L1 distance to the real crop inside the hole.

Random draws, per sample and in this order: whether a crop gets blobs, then the blobs' noise grid,
from the step's ``noise`` (``training/batch_noise.py``), so a resumed run draws the same holes.

The run around the step (data, logging, checkpoints, EMA, evaluation) is the shared loop's
(``liver_gan/training/loop.py``); :class:`Inpainting` is this family's part of it.  Its sample
grids fill the holes of fixed training crops (:func:`fixed_inputs`) and its evaluation is
liver_gan/metrics/inpainting.py's.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import Tensor, nn

from liver_gan.data.dataset import SliceSet
from liver_gan.data.masks import CT_CHANNEL
from liver_gan.data.schema import Crop
from liver_gan.errors import LiverGanError
from liver_gan.losses import check_loss_options, discriminator_loss, generator_loss
from liver_gan.models.inpaint import conditioning, critic_input
from liver_gan.models.registry import build_inpainting
from liver_gan.training.batch_noise import BatchNoise
from liver_gan.training.gan_step import AdversarialPair
from liver_gan.training.optim import build_optimizers
from liver_gan.training.stateless import Stateless
from liver_gan.training.state import FixedSamples

LOGGED_SCALARS = ("loss/D", "loss/G", "loss/L1_hole", "D(x)", "D(G(z))")
LIVER_CHANNEL, TUMOR_CHANNEL = CT_CHANNEL + 1, CT_CHANNEL + 2  # liver_gan/data/masks.py's order


def dilate(mask: Tensor, pixels: int) -> Tensor:
    """A {0, 1} (N, 1, R, R) mask grown by ``pixels`` in every direction (a square structuring element)."""
    if pixels <= 0:
        return mask
    return F.max_pool2d(mask, kernel_size=2 * pixels + 1, stride=1, padding=pixels)


def split_masks(real: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(N, 3, R, R) slices with mask channels -> the CT, and the liver and tumor as {0, 1} float masks."""
    ct = real[:, CT_CHANNEL : CT_CHANNEL + 1]
    liver = (real[:, LIVER_CHANNEL : LIVER_CHANNEL + 1] > 0).to(ct.dtype)
    tumor = (real[:, TUMOR_CHANNEL : TUMOR_CHANNEL + 1] > 0).to(ct.dtype)
    return ct, liver, tumor


def tumor_holes(tumor: Tensor, liver: Tensor, dilation: int) -> Tensor:
    """The tumor grown by ``dilation`` pixels, kept inside the liver it grows into (tumor included)."""
    return torch.maximum(dilate(tumor, dilation) * liver, tumor)


def random_blobs(liver: Tensor, noise: BatchNoise, model: DictConfig) -> Tensor:
    """Blobs inside the liver for a ``model.blob_probability`` share of the crops, none for the rest.

    Smooth noise: a ``blob_grid``-cell grid of normal values, upsampled bicubically to the crop and
    thresholded at ``blob_threshold``.
    """
    chosen = (noise.rand() < model.blob_probability).to(liver.dtype)
    grid = noise.randn(1, model.blob_grid, model.blob_grid).to(liver.device)
    field = F.interpolate(grid, size=liver.shape[-2:], mode="bicubic", align_corners=False)
    return (field > model.blob_threshold).to(liver.dtype) * liver * chosen[:, None, None, None]


def training_holes(liver: Tensor, tumor: Tensor, noise: BatchNoise, model: DictConfig) -> Tensor:
    """Each crop's hole: its dilated tumor, with random blobs for some crops."""
    return torch.maximum(tumor_holes(tumor, liver, model.hole_dilation), random_blobs(liver, noise, model))


def masked_l1(filled: Tensor, real: Tensor, mask: Tensor) -> Tensor:
    """Mean absolute difference over the batch's pixels in the {0, 1} ``mask`` (0 when it is empty)."""
    return ((filled - real).abs() * mask).sum() / mask.sum().clamp(min=1)


@dataclass
class Inpainting(AdversarialPair, Stateless):
    """The inpainter being trained: both networks, their optimizers, the loss and the model options.

    It has no state of its own to resume: the holes come from the step's noise."""

    generator: nn.Module
    discriminator: nn.Module
    optimizer_g: torch.optim.Optimizer
    optimizer_d: torch.optim.Optimizer
    loss: DictConfig
    model: DictConfig  # cfg.model: the L1 weight and how holes are made
    logged_scalars: tuple[str, ...] = LOGGED_SCALARS

    def step(
        self, real: Tensor, labels: Tensor | None, autocast: torch.autocast, noise: BatchNoise | None = None
    ) -> Tensor:
        return train_step(self, real, autocast, noise)


def train_step(gan: Inpainting, real: Tensor, autocast: torch.autocast, noise: BatchNoise | None = None) -> Tensor:
    """One PatchGAN step and one generator step on one batch; the logged scalars as one device tensor."""
    noise = BatchNoise.of_batch(len(real), real.device) if noise is None else noise
    ct, liver, tumor = split_masks(real)
    hole = training_holes(liver, tumor, noise, gan.model)
    with autocast:
        filled = gan.generator(conditioning(ct, hole, liver))
        d_loss, real_logits, fake_logits = discriminator_loss(
            gan.loss, gan.discriminator, critic_input(ct, hole, liver), critic_input(filled.detach(), hole, liver), None
        )
    gan.optimizer_d.zero_grad(set_to_none=True)
    d_loss.backward()
    gan.optimizer_d.step()

    gan.discriminator.requires_grad_(False)
    with autocast:
        adversarial = generator_loss(gan.loss, gan.discriminator(critic_input(filled, hole, liver)))
        l1 = masked_l1(filled.float(), ct, hole)
    gan.optimizer_g.zero_grad(set_to_none=True)
    (adversarial + gan.model.l1_weight * l1).backward()
    gan.optimizer_g.step()
    gan.discriminator.requires_grad_(True)
    return torch.stack(
        [d_loss.detach(), adversarial.detach(), l1.detach(), real_logits.sigmoid().mean(), fake_logits.sigmoid().mean()]
    ).float()


def check_options(cfg: DictConfig) -> None:
    """What the inpainter needs of the dataset, and the options that mean nothing for it."""
    check_loss_options(cfg.loss)
    if Crop(cfg.dataset.crop) is not Crop.liver:
        raise LiverGanError("model=inpaint fills lesions in liver-centred crops: set dataset.crop=liver")
    if not cfg.dataset.masks:
        raise LiverGanError("model=inpaint learns from each slice's tumor mask: set dataset.masks=true")
    if cfg.model.conditional:
        raise LiverGanError("model=inpaint is not class-conditional: set model.conditional=false")
    if cfg.augment.ops:
        raise LiverGanError(
            f"augment={'/'.join(str(op.value) for op in cfg.augment.ops)} is not supported with model=inpaint "
            "(a shifted crop would no longer match its hole mask): use augment=none"
        )
    if cfg.eval.every_kimg is not None:
        raise LiverGanError(
            "eval.every_kimg snapshots sample from noise and model=inpaint has none: set eval.every_kimg=null "
            "(the final evaluation measures the inpainter)"
        )
    model = cfg.model
    if model.hole_dilation < 0 or model.blob_grid < 1 or not 0 <= model.blob_probability <= 1 or model.l1_weight < 0:
        raise LiverGanError(
            f"model.hole_dilation={model.hole_dilation} and model.l1_weight={model.l1_weight} must be at least 0, "
            f"model.blob_grid={model.blob_grid} at least 1 and model.blob_probability={model.blob_probability} in [0, 1]"
        )


def build_training(cfg: DictConfig, device: torch.device) -> Inpainting:
    """``cfg``'s inpainter on ``device`` with its optimizers; a bad size fails here."""
    generator, discriminator = build_inpainting(cfg)
    generator, discriminator = generator.to(device), discriminator.to(device)
    optimizers = build_optimizers(cfg.optimizer, generator, discriminator, device)
    return Inpainting(generator, discriminator, *optimizers, cfg.loss, cfg.model)


def fixed_inputs(train: SliceSet, count: int, columns: int, hole_dilation: int, device: torch.device) -> FixedSamples:
    """The sample grids' inputs: the first ``count`` training crops with their dilated tumors as holes."""
    ct, liver, tumor = split_masks(train.images[:count].float())
    inputs = conditioning(ct, tumor_holes(tumor, liver, hole_dilation), liver)
    return FixedSamples(inputs.to(device), None, columns)
