"""Differentiable augmentation: what each op does, the same draw for real and fake, gradients, and ADA's p."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate
from omegaconf import OmegaConf

from liver_gan.augment import AIR, AdaptiveAugment, Augment, AugmentParams
from liver_gan.augment_schema import ADAConfig, AugmentConfig, AugmentOp, DiffAugmentConfig
from liver_gan.cli import CONFIG_DIR
from liver_gan.config import register_configs
from liver_gan.errors import LiverGanError

ALL_OPS = list(AugmentOp)
DIFFAUGMENT_OPS = [AugmentOp.translation, AugmentOp.cutout, AugmentOp.intensity]


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def identity_params(images: torch.Tensor) -> dict[str, torch.Tensor]:
    batch, _, height, width = images.shape
    return {
        "brightness": torch.zeros(batch),
        "contrast": torch.ones(batch),
        "flip": torch.zeros(batch, dtype=torch.bool),
        "shift": torch.zeros(batch, 2, dtype=torch.long),
        "keep": torch.ones(batch, 1, height, width, dtype=torch.bool),
    }


def test_none_returns_the_images_and_draws_nothing() -> None:
    augment = Augment()
    images = torch.randn(3, 1, 8, 8)
    state = torch.get_rng_state()
    assert augment(images) is images
    real, fake = augment.pair(images, images + 1)
    assert real is images and torch.equal(fake, images + 1)
    assert torch.equal(torch.get_rng_state(), state)


def test_translation_moves_whole_pixels_and_shifts_in_air() -> None:
    augment = Augment([AugmentOp.translation], translation=0.25)
    images = torch.zeros(2, 1, 8, 8)
    images[:, 0, 3, 4] = 1.0
    params = identity_params(images)
    params["shift"] = torch.tensor([[2, -1], [-2, 2]])
    out = augment.apply(images, AugmentParams(**params))

    assert out[0, 0, 5, 3] == 1 and out[1, 0, 1, 6] == 1
    assert (out == 1).sum() == 2
    assert (out[0, 0, :2] == AIR).all() and (out[0, 0, :, -1] == AIR).all()  # shifted in from above, right
    assert (out[1, 0, -2:] == AIR).all() and (out[1, 0, :, :2] == AIR).all()
    assert (out[0, 0, 2:, :-1] != AIR).all()


def test_cutout_sets_a_square_to_zero() -> None:
    augment = Augment([AugmentOp.cutout], cutout=0.5, generator=seeded())
    images = torch.ones(64, 1, 8, 8)
    out = augment(images)
    cut = (out == 0).flatten(1).sum(dim=1)
    assert (out[out != 0] == 1).all()
    assert cut.max() == 16 and cut.min() > 0  # a 4x4 square, clipped where it leaves the image
    rows = (out == 0).any(dim=3).sum(dim=(1, 2))
    columns = (out == 0).any(dim=2).sum(dim=(1, 2))
    assert torch.equal(cut, rows * columns), "the cut-out region is a rectangle"


def test_intensity_shifts_level_and_scales_contrast_within_the_limits() -> None:
    augment = Augment([AugmentOp.intensity], brightness=0.2, contrast=0.3, generator=seeded())
    images = torch.rand(256, 1, 8, 8) * 2 - 1
    params = augment.sample(images)
    out = augment.apply(images, params)

    mean = images.mean(dim=(1, 2, 3))
    torch.testing.assert_close(out.mean(dim=(1, 2, 3)), mean + params.brightness)
    torch.testing.assert_close(out.std(dim=(1, 2, 3)), images.std(dim=(1, 2, 3)) * params.contrast)
    assert params.brightness.abs().max() <= 0.2 and params.brightness.abs().max() > 0.15
    assert (params.contrast - 1).abs().max() <= 0.3 and (params.contrast - 1).abs().max() > 0.25


def test_flip_mirrors_left_and_right() -> None:
    augment = Augment([AugmentOp.flip], generator=seeded())
    images = torch.arange(8.0).expand(64, 1, 8, 8)
    params = augment.sample(images)
    out = augment.apply(images, params)
    assert 0 < params.flip.sum() < 64
    assert torch.equal(out[params.flip], images[params.flip].flip(3))
    assert torch.equal(out[~params.flip], images[~params.flip])


def test_pair_applies_one_draw_to_real_and_fake() -> None:
    real, fake = torch.rand(6, 1, 16, 16) * 2 - 1, torch.rand(6, 1, 16, 16) * 2 - 1
    augmented_real, augmented_fake = Augment(ALL_OPS, generator=seeded(3)).pair(real, fake)

    reference = Augment(ALL_OPS, generator=seeded(3))
    params = reference.sample(real)
    torch.testing.assert_close(augmented_real, reference.apply(real, params), rtol=0, atol=0)
    torch.testing.assert_close(augmented_fake, reference.apply(fake, params), rtol=0, atol=0)
    same_real, same_fake = Augment(ALL_OPS, generator=seeded(3)).pair(real, real.clone())
    torch.testing.assert_close(same_real, same_fake, rtol=0, atol=0)
    # ... while each image of a batch gets its own draw.
    copies = Augment(ALL_OPS, generator=seeded(3))(real[:1].expand(6, -1, -1, -1))
    assert len({tuple(image.flatten().tolist()) for image in copies}) == 6


def test_augmentation_is_differentiable_twice() -> None:
    """Exact first and second derivatives (R1 differentiates through D's input pipeline), gradients to the fake."""
    augment = Augment(ALL_OPS, translation=0.25, generator=seeded(1))
    fake = (torch.rand(3, 1, 8, 8, dtype=torch.float64) * 2 - 1).requires_grad_(True)
    params = augment.sample(fake)

    def pipeline(images: torch.Tensor) -> torch.Tensor:
        return augment.apply(images, params).square()  # square: a non-zero second derivative

    assert torch.autograd.gradcheck(pipeline, (fake,))
    assert torch.autograd.gradgradcheck(pipeline, (fake,))
    _, augmented_fake = augment.pair(fake.detach(), fake)
    augmented_fake.sum().backward()
    assert fake.grad.abs().sum() > 0


def overfit_logits(batch: int) -> torch.Tensor:
    """A stub D that has memorised the real images: sure of every one."""
    return torch.full((batch,), 3.0)


def unsure_logits(batch: int) -> torch.Tensor:
    """A stub D that calls half the real images real: r_t = 0, below the target."""
    return torch.tensor([2.0, -1.0]).repeat(batch // 2)


def test_ada_p_rises_while_d_overfits_and_falls_otherwise() -> None:
    batch = 8
    ada = AdaptiveAugment(DIFFAUGMENT_OPS, target=0.6, ada_kimg=0.1, adjust_every=2)
    step = batch * 2 / (0.1 * 1000)  # images per adjustment over the images that move p by 1

    ada.observe(overfit_logits(batch))
    assert ada.p.item() == 0  # not yet an adjustment step
    ada.observe(overfit_logits(batch))
    assert ada.p.item() == pytest.approx(step)
    assert ada.overfitting.item() == 1
    for _ in range(4):
        ada.observe(overfit_logits(batch))
    assert ada.p.item() == pytest.approx(3 * step)

    for _ in range(2):
        ada.observe(unsure_logits(batch))
    assert ada.overfitting.item() == 0
    assert ada.p.item() == pytest.approx(2 * step)
    for _ in range(10):
        ada.observe(unsure_logits(batch))
    assert ada.p.item() == 0  # clamped


def test_ada_p_is_steered_toward_the_target_not_zero() -> None:
    """r_t = 0.5 is below a 0.6 target (p falls) and above a 0.4 one (p rises)."""
    results = {}
    for target in (0.4, 0.6):
        ada = AdaptiveAugment(DIFFAUGMENT_OPS, target=target, ada_kimg=0.1, adjust_every=1, p=0.5)
        ada.observe(torch.tensor([1.0, 1.0, 1.0, -1.0]))
        results[target] = ada.p.item()
    assert results[0.4] > 0.5 > results[0.6]


def test_ada_probability_decides_which_images_are_augmented() -> None:
    images = torch.rand(16, 1, 8, 8) * 2 - 1
    never = AdaptiveAugment(DIFFAUGMENT_OPS, generator=seeded(), p=0.0)
    assert torch.equal(never(images), images)
    always = AdaptiveAugment(DIFFAUGMENT_OPS, generator=seeded(), p=1.0)
    diffaugment = Augment(DIFFAUGMENT_OPS, generator=seeded())
    assert torch.equal(always(images), diffaugment(images))
    half = AdaptiveAugment([AugmentOp.cutout], generator=seeded(), p=0.5)
    many = torch.rand(256, 1, 8, 8) + 1  # no pixel is 0 before a cutout
    changed = (half(many) != many).flatten(1).any(dim=1).float().mean()
    assert 0.4 < changed < 0.6


def test_ada_state_dict_resumes_exactly() -> None:
    def fresh() -> AdaptiveAugment:
        return AdaptiveAugment(DIFFAUGMENT_OPS, ada_kimg=0.1, adjust_every=3, generator=seeded(5))

    images = torch.rand(4, 1, 8, 8)
    original = fresh()
    for _ in range(7):
        original.observe(overfit_logits(4))
        original(images)
    state = original.state_dict()
    resumed = fresh()
    resumed.load_state_dict(state)
    for _ in range(5):
        for ada in (original, resumed):
            ada.observe(unsure_logits(4) if ada.p > 0.3 else overfit_logits(4))
        assert torch.equal(original(images), resumed(images))
        assert torch.equal(original.p, resumed.p)
    assert original.p > 0


@pytest.mark.parametrize(
    "options, option",
    [
        ({"translation": 0.6}, "augment.translation"),
        ({"cutout": -0.1}, "augment.cutout"),
        ({"contrast": 1.0}, "augment.contrast"),
        ({"target": 1.0}, "augment.target"),
        ({"ada_kimg": 0}, "augment.ada_kimg"),
        ({"adjust_every": 0}, "augment.adjust_every"),
    ],
)
def test_bad_options_name_the_option(options: dict, option: str) -> None:
    with pytest.raises(LiverGanError, match=option):
        AdaptiveAugment(DIFFAUGMENT_OPS, **options)


@pytest.mark.parametrize(
    "name, schema, kind",
    [("none", AugmentConfig, Augment), ("diffaugment", DiffAugmentConfig, Augment), ("ada", ADAConfig, AdaptiveAugment)],
)
def test_augment_group_composes_and_builds(name: str, schema: type, kind: type) -> None:
    assert (Path(CONFIG_DIR) / "augment" / f"{name}.yaml").is_file()
    register_configs()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name=f"augment/{name}").augment
        with pytest.raises(ConfigCompositionException):
            compose(config_name=f"augment/{name}", overrides=["augment.translaton=0.1"])
    assert OmegaConf.get_type(cfg) is schema
    augment = instantiate(cfg)
    assert type(augment) is kind
    assert augment.ops == ({AugmentOp(op) for op in cfg.ops} if "ops" in cfg else set())
