"""Schemas of the ``model`` config group (conf/model/*.yaml), registered in liver_gan/config.py.

Each family's ``_target_`` names its builder; liver_gan/models/registry.py builds only the targets
of these schemas (a subclass of :class:`BaseModelConfig`), so a family joins by adding its schema here.
The lookup of a target's schema (:func:`require_registered_builder`) is here too, torch-free, so that
composing a config (``${by_family:...}``) and checking a saved one import no network code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import List

from omegaconf import MISSING

from liver_gan.errors import LiverGanError


class Conditioning(str, Enum):
    projection = "projection"
    concat = "concat"


class Prediction(str, Enum):
    """What a diffusion network predicts (MONAI's ``prediction_type``)."""

    epsilon = "epsilon"  # the added noise (Ho et al. 2020)
    v = "v"  # the velocity sqrt(a_t) * noise - sqrt(1 - a_t) * x_0 (Salimans & Ho 2022)


class NoiseSchedule(str, Enum):
    """MONAI's named beta schedules (``monai.networks.schedulers.NoiseSchedules``)."""

    linear_beta = "linear_beta"  # Ho et al. (2020): betas from 1e-4 to 0.02
    scaled_linear_beta = "scaled_linear_beta"
    sigmoid_beta = "sigmoid_beta"
    cosine = "cosine"  # Nichol & Dhariwal (2021)


@dataclass
class BaseModelConfig:
    """Fields of every model family, GAN or diffusion; ``_target_`` builds the family's networks."""

    _target_: str = MISSING
    conditional: bool = False


@dataclass
class ModelConfig(BaseModelConfig):
    """Common fields of every GAN family; ``_target_`` builds (generator, discriminator)."""

    latent_dim: int = 100
    conditioning: Conditioning = Conditioning.projection  # how D sees the class label


@dataclass
class MLPConfig(ModelConfig):
    """The thesis's Table 2 MLP GAN."""

    _target_: str = "liver_gan.models.mlp.build_mlp_gan"
    generator_widths: List[int] = field(default_factory=lambda: [256, 512, 1024])
    discriminator_widths: List[int] = field(default_factory=lambda: [512, 256])


@dataclass
class DCGANConfig(ModelConfig):
    """Radford et al. (2016) DCGAN, extended with stages for 128 and 256 pixels."""

    _target_: str = "liver_gan.models.dcgan.build_dcgan"
    generator_channels: int = 64
    discriminator_channels: int = 64


@dataclass
class StyleGAN2Config(ModelConfig):
    """Karras et al. (2020) StyleGAN2: widths are min(channel_base / size, channel_max) per size."""

    _target_: str = "liver_gan.models.stylegan2.build_stylegan2"
    latent_dim: int = 256
    style_dim: int = 256  # w
    mapping_layers: int = 8
    mapping_lr_multiplier: float = 0.01
    # A sixteenth of the paper's 32768 (32 channels at 64 px, 256 from 8 px down), so that 64 px
    # costs about what DCGAN does on a CPU; raise both on a GPU.
    channel_base: int = 2048
    channel_max: int = 256
    mbstd_group_size: int = 4


@dataclass
class DDPMConfig(BaseModelConfig):
    """A denoising diffusion model on MONAI: DDPM training, DDIM sampling, classifier-free guidance.

    The U-Net fields are ``monai.networks.nets.DiffusionModelUNet``'s; the defaults are small enough
    for a CPU, with self-attention only at the lowest resolution.
    """

    _target_: str = "liver_gan.models.ddpm.build_ddpm"
    prediction: Prediction = Prediction.epsilon
    num_train_timesteps: int = 1000
    schedule: NoiseSchedule = NoiseSchedule.linear_beta
    sample_steps: int = 50  # DDIM steps per image: fewer is faster and coarser
    # 1 is the plain conditional model; s > 1 trades diversity for fidelity (conditional only).
    guidance_scale: float = 1.0
    # Fraction of training labels replaced by the null class, which guidance needs (conditional only).
    label_dropout: float = 0.1
    channels: List[int] = field(default_factory=lambda: [32, 64, 64])  # one entry per resolution level
    # Self-attention per level; MONAI's middle block attends at the last level in any case.
    attention_levels: List[bool] = field(default_factory=lambda: [False, False, True])
    num_res_blocks: int = 1
    # GroupNorm groups; every entry of channels must be a multiple.  A group needs several channels:
    # with one channel per group (MONAI's 32 at 32 channels) GroupNorm removes the per-channel shift
    # by which the timestep and class embeddings enter each block.
    norm_num_groups: int = 8
    num_head_channels: int = 32  # channels per attention head


@dataclass
class InpaintConfig(BaseModelConfig):
    """A pix2pix-style inpainter (Isola et al. 2017) for ``lesion=learned``: a MONAI ``UNet`` fills a
    hole in a liver-centred crop and a MONAI ``PatchDiscriminator`` judges the filled crop.

    Trained by liver_gan/training/inpaint_step.py on slices with their masks (``dataset.crop=liver``,
    ``dataset.masks=true``); each hole is the slice's tumor, dilated, sometimes with random blobs in the liver.
    """

    _target_: str = "liver_gan.models.inpaint.build_inpainter"
    channels: List[int] = field(default_factory=lambda: [16, 32, 64])  # U-Net channels per level
    strides: List[int] = field(default_factory=lambda: [2, 2])  # one fewer than channels
    num_res_units: int = 1
    discriminator_channels: int = 16  # the PatchGAN's first layer, doubled per layer
    discriminator_layers: int = 2  # layers after the first; the PatchGAN judges a grid of R / 2**layers patches
    l1_weight: float = 100.0  # the L1 term inside the hole against the adversarial term (pix2pix's lambda)
    hole_dilation: int = 2  # pixels at dataset.resolution by which a tumor mask grows into its hole
    blob_probability: float = 0.5  # chance that a training hole also gets random blobs inside the liver
    blob_grid: int = 8  # the blobs' smooth noise is drawn on a grid of this many cells a side
    blob_threshold: float = 1.0  # noise above this (in standard deviations) is a blob: higher, fewer and smaller


def model_schemas() -> dict[str, type[BaseModelConfig]]:
    """liver-gan's registered model builders: each model schema's ``_target_``, with its schema."""
    schemas, pending = {}, list(BaseModelConfig.__subclasses__())
    while pending:
        schema = pending.pop()
        pending += schema.__subclasses__()
        if schema._target_ != MISSING:
            schemas[schema._target_] = schema
    return schemas


def require_registered_builder(target: str, where: str) -> type[BaseModelConfig]:
    """The schema of the builder ``target``; anything but a registered builder is refused."""
    schemas = model_schemas()
    if target not in schemas:
        raise LiverGanError(
            f"{where}: model._target_={target!r} is not one of liver-gan's model builders ({', '.join(sorted(schemas))})"
        )
    return schemas[target]
