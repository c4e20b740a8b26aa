"""The diffusion family (models/ddpm.py, training/diffusion_step.py): MONAI's schedule, the denoising loss
by hand, deterministic DDIM, classifier-free guidance against MONAI's own sampler, learning, ranges."""

from __future__ import annotations

import copy
from typing import Callable

import pytest
import torch
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate
from monai.inferers import DiffusionInferer
from monai.networks.schedulers import DDIMScheduler, DDPMScheduler
from omegaconf import DictConfig
from torch import Tensor

from liver_gan.errors import LiverGanError
from liver_gan.models.ddpm import DiffusionModel, build_ddpm
from liver_gan.models.registry import build_gan
from liver_gan.sampling import generate
from liver_gan.training.batch_noise import BatchNoise
from liver_gan.training.diffusion_step import diffusion_loss, train_step

CPU = torch.device("cpu")

Compose = Callable[..., DictConfig]
TIMESTEPS = 50  # a short schedule keeps DDIM's step count small
TINY = {
    "conditional": False,
    "prediction": "epsilon",
    "num_train_timesteps": TIMESTEPS,
    "schedule": "linear_beta",
    "sample_steps": 4,
    "guidance_scale": 1.0,
    "label_dropout": 0.5,
    "channels": [8, 8],
    "attention_levels": [False, True],
    "num_res_blocks": 1,
    "norm_num_groups": 2,
    "num_head_channels": 8,
    "resolution": 16,
    "num_classes": 0,
}


def tiny_model(**options) -> DiffusionModel:
    """A tiny U-Net whose zero-initialised layers are given small random weights.

    MONAI starts the output convolution and every residual branch at zero (``zero_module``), so an
    untrained U-Net predicts 0 whatever its input: labels, guidance and seeds would change nothing.
    """
    if options.get("conditional"):
        options.setdefault("num_classes", 2)
    model = build_ddpm(**{**TINY, **options})
    rng = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() > 1 and not parameter.any():
                parameter.copy_(torch.randn(parameter.shape, generator=rng) * 0.1)
    return model


def linear_alphas_cumprod(timesteps: int) -> Tensor:
    """Ho et al.'s schedule by hand: betas linear from 1e-4 to 0.02, a_t the product of (1 - beta)."""
    return torch.cumprod(1 - torch.linspace(1e-4, 0.02, timesteps), dim=0)


def test_training_and_sampling_share_monais_noise_schedule() -> None:
    model = tiny_model()
    assert torch.allclose(model.scheduler.alphas_cumprod, linear_alphas_cumprod(TIMESTEPS))
    cosine = tiny_model(schedule="cosine")
    reference = DDPMScheduler(TIMESTEPS, "cosine").alphas_cumprod
    assert torch.equal(cosine.scheduler.alphas_cumprod, reference)
    assert torch.equal(cosine.sampler.alphas_cumprod, reference)
    assert not torch.allclose(reference, linear_alphas_cumprod(TIMESTEPS))


@pytest.mark.parametrize("prediction", ["epsilon", "v"])
def test_the_training_loss_is_the_denoising_loss_computed_by_hand(prediction: str) -> None:
    """Same timesteps, noise and label-dropout draws -> the loss of x_t and the target written out."""
    model = tiny_model(conditional=True, prediction=prediction, label_dropout=0.5)
    images = torch.rand(8, 1, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    labels = torch.tensor([0, 1] * 4)
    loss = diffusion_loss(model, images, labels, BatchNoise.of_batch(8, CPU, torch.Generator().manual_seed(2)))

    rng = torch.Generator().manual_seed(2)
    timesteps = torch.randint(0, TIMESTEPS, (8,), generator=rng)
    noise = torch.randn(images.shape, generator=rng)
    dropped = torch.rand(8, generator=rng) < 0.5
    assert dropped.any() and not dropped.all()
    alpha = linear_alphas_cumprod(TIMESTEPS)[timesteps].view(-1, 1, 1, 1)
    noisy = alpha.sqrt() * images + (1 - alpha).sqrt() * noise
    target = noise if prediction == "epsilon" else alpha.sqrt() * noise - (1 - alpha).sqrt() * images
    seen_labels = torch.where(dropped, model.null_class, labels)
    expected = ((model.unet(noisy, timesteps, class_labels=seen_labels) - target) ** 2).mean()
    assert torch.allclose(loss, expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("prediction", ["epsilon", "v"])
def test_one_training_step_agrees_with_monais_inferer(prediction: str) -> None:
    """MONAI's own training path, DiffusionInferer(scheduler)(x_0, network, noise, t) (it noises the
    batch with scheduler.add_noise), with MONAI's target, gives our loss; the step then moves the
    weights by exactly the gradient of that loss."""
    model = tiny_model(prediction=prediction)
    images = torch.rand(4, 1, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    rng = torch.Generator().manual_seed(3)
    timesteps = torch.randint(0, TIMESTEPS, (4,), generator=rng)
    noise = torch.randn(images.shape, generator=rng)
    output = DiffusionInferer(model.scheduler)(images, model.unet, noise, timesteps)
    target = noise if prediction == "epsilon" else model.scheduler.get_velocity(images, noise, timesteps)
    monai_loss = torch.nn.functional.mse_loss(output, target)

    reference = copy.deepcopy(model)
    reference_optimizer = torch.optim.SGD(reference.parameters(), lr=0.1)
    reference_optimizer.zero_grad()
    torch.nn.functional.mse_loss(
        DiffusionInferer(reference.scheduler)(images, reference.unet, noise, timesteps), target
    ).backward()
    reference_optimizer.step()

    values = train_step(
        model, torch.optim.SGD(model.parameters(), lr=0.1), images, None,
        torch.autocast("cpu", enabled=False), BatchNoise.of_batch(4, CPU, torch.Generator().manual_seed(3)),
    )
    assert torch.allclose(values[0], monai_loss, rtol=1e-5, atol=1e-7)
    for name, parameter in model.named_parameters():
        assert torch.allclose(parameter, dict(reference.named_parameters())[name], atol=1e-6), name


def test_ddim_sampling_is_deterministic_for_a_seed_and_a_generator_call() -> None:
    model = tiny_model()
    first = model.sample(3, seed=1)
    assert torch.equal(first, model.sample(3, seed=1))
    assert not torch.allclose(first, model.sample(3, seed=2))
    # The generators' path: liver_gan.sampling.generate draws the same noise and calls model(z).
    assert torch.equal(first, generate(model, 3, "cpu", seed=1))


def monai_ddim(model: DiffusionModel, noise: Tensor, predict: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
    """MONAI's own DDIM loop (DiffusionInferer.sample) around ``predict(x_t, timesteps)``."""
    sampler = DDIMScheduler(TIMESTEPS, "linear_beta", prediction_type="epsilon")
    sampler.set_timesteps(model.sample_steps)

    def network(x: Tensor, timesteps: Tensor, context: None) -> Tensor:
        return predict(x, timesteps.expand(len(x)).long())

    return DiffusionInferer(sampler).sample(noise, network, sampler, verbose=False)


@pytest.mark.parametrize("scale", [0.0, 1.0, 3.0])
def test_classifier_free_guidance_matches_monais_sampler(scale: float) -> None:
    """s = 0 is the unconditional (null-class) model, s = 1 the plain conditional one, else u + s (c - u)."""
    model = tiny_model(conditional=True)
    labels = torch.tensor([0, 1, 1])
    noise = torch.randn(3, 1, 16, 16, generator=torch.Generator().manual_seed(4))
    batch_sizes: list[int] = []
    model.unet.register_forward_hook(lambda module, args, output: batch_sizes.append(len(output)))

    images = model.ddim(noise, labels, model.sample_steps, scale)

    null = torch.full_like(labels, model.null_class)

    def guided(x: Tensor, timesteps: Tensor) -> Tensor:
        conditional = model.unet(x, timesteps, class_labels=labels)
        if scale == 1.0:
            return conditional
        unconditional = model.unet(x, timesteps, class_labels=null)
        return unconditional + scale * (conditional - unconditional)

    passes = batch_sizes.copy()
    assert torch.allclose(images, monai_ddim(model, noise, guided), atol=1e-5)
    # Scale 1 runs only the conditional pass; other scales one batched pass of both.
    assert passes == [3 if scale == 1.0 else 6] * model.sample_steps
    if scale != 1.0:
        assert not torch.allclose(images, model.ddim(noise, labels, model.sample_steps, 1.0), atol=1e-3)


@pytest.mark.parametrize("prediction", ["epsilon", "v"])
def test_both_predictions_learn_a_fixed_batch(prediction: str) -> None:
    torch.manual_seed(0)
    model = build_ddpm(**{**TINY, "prediction": prediction})
    images = torch.linspace(-1, 1, 16).view(1, 1, 1, 16).expand(4, 1, 16, 16).clone()
    images[1::2] = -images[1::2]

    def held_out_loss() -> float:
        noises = [BatchNoise.of_batch(4, CPU, torch.Generator().manual_seed(seed)) for seed in range(4)]
        return sum(diffusion_loss(model, images, None, noise).item() for noise in noises)

    before = held_out_loss()
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    autocast = torch.autocast("cpu", enabled=False)
    train_step(model, optimizer, images, None, autocast)
    gradients = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    assert torch.isfinite(gradients).all() and gradients.abs().sum() > 0
    for _ in range(9):
        values = train_step(model, optimizer, images, None, autocast)
    assert values.shape == (1,) and torch.isfinite(values).all()
    assert held_out_loss() < 0.8 * before


@pytest.mark.parametrize("resolution", [64, 128])
def test_samples_lie_in_minus_one_one_with_the_image_shape(resolution: int) -> None:
    model = tiny_model(
        conditional=True,
        resolution=resolution,
        channels=[8, 8, 8],
        attention_levels=[False, False, True],
        sample_steps=2,
        guidance_scale=2.0,
    )
    images = model.sample(2, torch.tensor([0, 1]), seed=0)
    assert images.shape == (2, 1, resolution, resolution)
    assert images.min() >= -1 and images.max() <= 1
    assert images.std() > 0


def test_model_ddpm_composes_into_the_monai_model_it_names(compose_config: Compose) -> None:
    overrides = [
        "model.prediction=v",
        "model.sample_steps=20",
        "model.schedule=cosine",
        "model.channels=[16,16]",
        "model.attention_levels=[false,true]",
        "model.norm_num_groups=4",
        "model.num_head_channels=16",
    ]
    cfg = compose_config(["model=ddpm", "model.conditional=true", "dataset.subset=all", *overrides])
    model = instantiate(cfg.model, resolution=32, num_classes=2)
    assert isinstance(model, DiffusionModel)
    assert model.unet.block_out_channels == (16, 16) and model.unet.attention_levels == (False, True)
    assert model.scheduler.prediction_type == model.sampler.prediction_type == "v_prediction"
    assert torch.equal(model.sampler.alphas_cumprod, DDPMScheduler(1000, "cosine").alphas_cumprod)
    assert model.unet.class_embedding.num_embeddings == 3  # healthy, tumor and the null class
    assert (model.sample_steps, model.latent_dim, model.num_classes, model.resolution) == (20, 32 * 32, 2, 32)
    with pytest.raises(ConfigCompositionException):
        compose_config(["model=ddpm", "model.latent_dim=64"])  # a GAN option, not a diffusion one


def test_build_gan_refuses_a_diffusion_model_in_one_line(compose_config: Compose) -> None:
    with pytest.raises(LiverGanError, match="builds a diffusion model, not a GAN") as error:
        build_gan(compose_config(["model=ddpm"]))
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"channels": [8, 12], "norm_num_groups": 8}, "model.norm_num_groups"),
        ({"attention_levels": [True]}, "model.attention_levels"),
        ({"num_head_channels": 3}, "model.num_head_channels"),
        ({"resolution": 17}, "dataset.resolution=17"),
        ({"sample_steps": 0}, "model.sample_steps"),
        ({"sample_steps": TIMESTEPS + 1}, "model.sample_steps"),
        ({"guidance_scale": 2.0}, "model.conditional=true"),
        ({"conditional": True, "num_classes": 2, "guidance_scale": 2.0, "label_dropout": 0.0}, "model.label_dropout"),
        ({"label_dropout": 1.0}, "model.label_dropout"),
        ({"num_train_timesteps": 0}, "model.num_train_timesteps"),
    ],
)
def test_bad_options_fail_with_a_one_line_error_naming_them(options: dict, named: str) -> None:
    with pytest.raises(LiverGanError) as error:
        build_ddpm(**{**TINY, **options})
    assert named in str(error.value) and "\n" not in str(error.value)


def test_a_sampling_override_is_checked_too() -> None:
    with pytest.raises(LiverGanError, match="model.sample_steps"):
        tiny_model().sample(1, seed=0, sample_steps=TIMESTEPS + 1)
