"""A denoising diffusion model on MONAI: DDPM training (Ho et al. 2020), DDIM sampling (Song et al. 2021).

The network is MONAI's ``DiffusionModelUNet``.  MONAI's ``DDPMScheduler`` defines the forward
noising that training learns to undo, and its ``DDIMScheduler`` (eta = 0) the sampler; both are
built from the same ``num_train_timesteps`` and ``schedule``, so they share one ``alphas_cumprod``.

Interface, the GAN generators' one wherever sampling is concerned (``liver_gan/models/registry.py``):

- ``latent_dim = R * R``: a latent vector z is the starting noise x_T, flattened.  DDIM with eta = 0
  maps x_T to an image deterministically, so ``model(z[N, latent_dim], labels[N] | None)`` returns
  images[N, 1, R, R] in [-1, 1] that depend on z alone, and ``liver_gan.sampling.generate`` (seeded,
  batched), fixed-noise sample grids and every tool that calls a generator work unchanged.  It runs
  ``model.sample_steps`` DDIM steps with ``model.guidance_scale``.
- ``num_classes`` (2 when conditional, else 0) and ``resolution``, as on a generator; labels are
  given exactly when ``num_classes > 0``.
- ``sample(num_images, labels, seed, sample_steps, guidance_scale)`` overrides the step count and the
  guidance for one call (sampling cost is a setting), with the noise ``generate`` would draw.
- For training, ``denoise(x_t, timesteps, labels)`` is the network's prediction (epsilon or v);
  the loss and the training step are in ``liver_gan/training/diffusion_step.py``.

Class conditioning uses the U-Net's class embedding with one more entry than there are classes:
the null class, "no label".  Training replaces a fraction ``label_dropout`` of the labels by it, so
one network learns both the conditional and the unconditional prediction, and classifier-free
guidance (Ho & Salimans 2022) mixes them at sampling time: ``u + s * (c - u)``.

MONAI's ``DiffusionInferer`` is not used: it conditions through cross-attention context or
concatenated channels, not class embeddings, and its guidance always runs the unconditional pass.
"""

from __future__ import annotations

from typing import Sequence

import torch
from monai.networks.nets import DiffusionModelUNet
from monai.networks.schedulers import DDIMScheduler, DDPMScheduler
from torch import Tensor, nn

from liver_gan.errors import LiverGanError
from liver_gan.models.common import ImageGenerator, require_positive
from liver_gan.models.conditioning import check_labels, model_classes
from liver_gan.models.schema import NoiseSchedule, Prediction

MONAI_PREDICTION = {Prediction.epsilon: "epsilon", Prediction.v: "v_prediction"}


class DiffusionModel(ImageGenerator):
    """A ``DiffusionModelUNet`` with its training scheduler and its sampler; see the module docstring."""

    def __init__(
        self,
        unet: DiffusionModelUNet,
        scheduler: DDPMScheduler,
        sampler: DDIMScheduler,
        prediction: Prediction,
        resolution: int,
        num_classes: int,
        sample_steps: int,
        guidance_scale: float,
        label_dropout: float,
        image_channels: int = 1,
    ) -> None:
        # z is the starting noise x_T, flattened.
        super().__init__(image_channels * resolution * resolution, num_classes, resolution, image_channels)
        self.unet = unet
        self.scheduler = scheduler
        self.sampler = sampler
        self.prediction = Prediction(prediction)
        self.null_class = num_classes  # the class embedding's last entry
        self.sample_steps = sample_steps
        self.guidance_scale = guidance_scale
        self.label_dropout = label_dropout

    def denoise(self, x_t: Tensor, timesteps: Tensor, labels: Tensor | None) -> Tensor:
        """The network's prediction of the noise (epsilon) or of v for noisy images at ``timesteps``."""
        return self.unet(x_t, timesteps, class_labels=labels)

    def guided_prediction(self, x_t: Tensor, timesteps: Tensor, labels: Tensor | None, guidance_scale: float) -> Tensor:
        """Classifier-free guidance; at scale 1 (or unconditional) the plain prediction, in one pass."""
        if labels is None or guidance_scale == 1.0:
            return self.denoise(x_t, timesteps, labels)
        null = torch.full_like(labels, self.null_class)
        both = self.denoise(torch.cat((x_t, x_t)), torch.cat((timesteps, timesteps)), torch.cat((null, labels)))
        unconditional, conditional = both.chunk(2)
        return unconditional + guidance_scale * (conditional - unconditional)

    @torch.no_grad()
    def ddim(self, noise: Tensor, labels: Tensor | None, sample_steps: int, guidance_scale: float) -> Tensor:
        """Images in [-1, 1] from the starting noise x_T (N, 1, R, R) by ``sample_steps`` DDIM steps.

        The sampler clips each predicted x_0 to [-1, 1] (``clip_sample``), and its last step, whose
        previous alpha product is 1 (``set_alpha_to_one``), returns that clipped x_0.
        """
        check_labels(self.num_classes, labels, noise.shape[0])
        check_sampling(sample_steps, guidance_scale, self.sampler.num_train_timesteps, self.num_classes)
        self.sampler.set_timesteps(sample_steps)
        image = noise
        for timestep in self.sampler.timesteps:
            timesteps = timestep.expand(len(image)).to(image.device)
            output = self.guided_prediction(image, timesteps, labels, guidance_scale)
            image, _ = self.sampler.step(output, int(timestep), image)
        return image

    def sample(
        self,
        num_images: int,
        labels: Tensor | None = None,
        seed: int | None = None,
        sample_steps: int | None = None,
        guidance_scale: float | None = None,
    ) -> Tensor:
        """``num_images`` images on the model's device, from the noise ``generate`` draws for ``seed``.

        The noise comes from a CPU ``torch.Generator`` seeded with ``seed`` (the global RNG when
        None), so a seed gives the same images on any device.  ``sample_steps`` and
        ``guidance_scale`` default to the model's settings.
        """
        device = next(self.parameters()).device
        rng = torch.Generator().manual_seed(seed) if seed is not None else None
        noise = torch.randn(num_images, self.latent_dim, generator=rng).to(device)
        return self.ddim(
            noise.view(-1, self.image_channels, self.resolution, self.resolution),
            None if labels is None else labels.to(device),
            self.sample_steps if sample_steps is None else sample_steps,
            self.guidance_scale if guidance_scale is None else guidance_scale,
        )

    def forward(self, z: Tensor, labels: Tensor | None = None) -> Tensor:
        """A generator's call: images from latent vectors z (the flattened x_T) by the model's DDIM settings."""
        return self.ddim(
            z.reshape(-1, self.image_channels, self.resolution, self.resolution),
            labels,
            self.sample_steps,
            self.guidance_scale,
        )


def with_sample_steps(model: DiffusionModel, sample_steps: int, option: str) -> DiffusionModel:
    """``model`` set to draw with ``sample_steps`` DDIM steps from now on, checked first; ``option``
    names the setting in errors."""
    check_sampling(sample_steps, model.guidance_scale, model.sampler.num_train_timesteps, model.num_classes, option)
    model.sample_steps = sample_steps
    return model


def sampling_settings(generator: nn.Module) -> dict[str, int | float]:
    """How a diffusion model draws (``sample_steps``, ``guidance_scale``), recorded beside its
    metrics because they trade quality for time; nothing for a GAN's generator."""
    if not isinstance(generator, DiffusionModel):
        return {}
    return {"sample_steps": generator.sample_steps, "guidance_scale": generator.guidance_scale}


def check_sampling(
    sample_steps: int,
    guidance_scale: float,
    num_train_timesteps: int,
    num_classes: int,
    steps_option: str = "model.sample_steps",
) -> None:
    """DDIM takes 1 to ``num_train_timesteps`` steps; guidance needs a conditional model."""
    if not 1 <= sample_steps <= num_train_timesteps:
        raise LiverGanError(
            f"{steps_option}={sample_steps}: use 1 to model.num_train_timesteps={num_train_timesteps} DDIM steps"
        )
    if guidance_scale < 0:
        raise LiverGanError(f"model.guidance_scale={guidance_scale}: use 0 or more (1 is the plain conditional model)")
    if guidance_scale != 1.0 and num_classes == 0:
        raise LiverGanError(
            f"model.guidance_scale={guidance_scale} needs a class-conditional model: "
            "set model.conditional=true or model.guidance_scale=1"
        )


def check_unet(
    channels: Sequence[int],
    attention_levels: Sequence[bool],
    norm_num_groups: int,
    num_head_channels: int,
    resolution: int,
) -> None:
    """U-Net options MONAI would refuse with a traceback, or that do not fit the image size."""
    require_positive("model.channels", channels)
    require_positive("model.norm_num_groups", [norm_num_groups])
    require_positive("model.num_head_channels", [num_head_channels])
    if not channels:
        raise LiverGanError("model.channels is empty: give one channel count per resolution level, e.g. [32, 64, 64]")
    if len(attention_levels) != len(channels):
        raise LiverGanError(
            f"model.attention_levels has {len(attention_levels)} entries and model.channels {len(channels)}: "
            "give one per resolution level"
        )
    if any(count % norm_num_groups for count in channels):
        raise LiverGanError(
            f"model.channels={list(channels)} must all be multiples of model.norm_num_groups={norm_num_groups}"
        )
    # MONAI's middle block always attends, at the last level.
    attended = [count for count, attention in zip(channels, attention_levels) if attention] + [channels[-1]]
    if any(count % num_head_channels for count in attended):
        raise LiverGanError(
            f"model.num_head_channels={num_head_channels} must divide the channels of every attention level, {attended}"
        )
    # Each level after the first halves the feature map.
    factor = 2 ** (len(channels) - 1)
    if resolution % factor:
        raise LiverGanError(
            f"dataset.resolution={resolution} does not suit model=ddpm with {len(channels)} levels: "
            f"use a multiple of {factor} (64 or 128), or fewer model.channels"
        )


def build_ddpm(
    conditional: bool,
    prediction: Prediction,
    num_train_timesteps: int,
    schedule: NoiseSchedule,
    sample_steps: int,
    guidance_scale: float,
    label_dropout: float,
    channels: Sequence[int],
    attention_levels: Sequence[bool],
    num_res_blocks: int,
    norm_num_groups: int,
    num_head_channels: int,
    resolution: int,
    num_classes: int,
    image_channels: int = 1,
) -> DiffusionModel:
    """The diffusion model of ``model=ddpm`` at ``resolution`` x ``resolution``, denoising the CT
    channel and any mask channels (``image_channels``) together."""
    classes = model_classes(conditional, num_classes)
    require_positive("model.num_train_timesteps", [num_train_timesteps])
    require_positive("model.num_res_blocks", [num_res_blocks])
    check_unet(channels, attention_levels, norm_num_groups, num_head_channels, resolution)
    check_sampling(sample_steps, guidance_scale, num_train_timesteps, classes)
    if not 0.0 <= label_dropout < 1.0:
        raise LiverGanError(f"model.label_dropout={label_dropout}: use a fraction in [0, 1), e.g. 0.1")
    if guidance_scale != 1.0 and label_dropout == 0.0:
        raise LiverGanError(
            f"model.guidance_scale={guidance_scale} needs the null class that label dropout trains: "
            "set model.label_dropout > 0 (e.g. 0.1) or model.guidance_scale=1"
        )
    unet = DiffusionModelUNet(
        spatial_dims=2,
        in_channels=image_channels,
        out_channels=image_channels,
        num_res_blocks=num_res_blocks,
        channels=tuple(channels),
        attention_levels=tuple(attention_levels),
        norm_num_groups=norm_num_groups,
        num_head_channels=num_head_channels,
        num_class_embeds=classes + 1 if classes else None,
    )
    monai_prediction = MONAI_PREDICTION[Prediction(prediction)]
    schedule_name = NoiseSchedule(schedule).value
    return DiffusionModel(
        unet,
        DDPMScheduler(num_train_timesteps, schedule_name, prediction_type=monai_prediction),
        DDIMScheduler(num_train_timesteps, schedule_name, prediction_type=monai_prediction),
        prediction,
        resolution,
        classes,
        sample_steps,
        guidance_scale,
        label_dropout,
        image_channels,
    )
