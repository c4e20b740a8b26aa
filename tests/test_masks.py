"""Label maps travelling with their slices (issue 16): slicing, the dataset's mask channels, joint
generation by every model family, and the sample grids' overlay."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from nifti_factory import write_lits_dataset
from omegaconf import DictConfig, OmegaConf

from liver_gan.augment import Augment
from liver_gan.augment_schema import AugmentOp
from liver_gan.data.dataset import prepare_dataset
from liver_gan.data.labels import LIVER_LABEL, TUMOR
from liver_gan.data.masks import MASK_CHANNELS, ct, decode, encode, label_maps
from liver_gan.data.nifti import CTScan
from liver_gan.data.schema import Crop, DatasetConfig
from liver_gan.data.slicing import SliceOptions, slice_scan
from liver_gan.images import image_grid
from liver_gan.models.registry import build_gan
from liver_gan.sampling import generate

Compose = Callable[..., DictConfig]

TUMOR_HU = 300.0  # bright, so the resized image shows where the planted block went


def planted_scan(side: int = 96) -> tuple[CTScan, np.ndarray]:
    """One axial slice: a liver square holding a 24-pixel tumor block off its centre, in RAS."""
    hu = np.full((side, side, 1), -50.0, np.float32)
    labels = np.zeros((side, side, 1), np.int8)
    labels[20:70, 30:80] = LIVER_LABEL
    hu[20:70, 30:80] = 60.0
    tumor = np.zeros((side, side, 1), bool)
    tumor[40:64, 50:74] = True
    labels[tumor], hu[tumor] = 2, TUMOR_HU
    return CTScan(stored=hu, slope=1.0, inter=0.0, labels=labels, spacing=(0.7, 0.8, 2.5)), tumor


@pytest.mark.parametrize("crop", [Crop.none, Crop.liver])
def test_a_planted_tumor_block_survives_crop_and_resize_as_label_2_where_the_image_shows_it(crop: Crop) -> None:
    scan, _ = planted_scan()
    options = SliceOptions(
        resolution=16, window_level=50.0, window_width=400.0, crop=crop, crop_margin=0.15, crop_min_fraction=0.0, masks=True
    )

    sliced = slice_scan(scan, options)

    maps = sliced.label_maps[0]
    assert maps.shape == (16, 16) and set(np.unique(maps)) == {0, 1, 2}
    liver_level, tumor_level = (60.0 - 50.0) / 200.0, 1.0  # the window clips the tumor's 300 HU to 1
    bright = sliced.images[0] > (liver_level + tumor_level) / 2  # nearer the tumor's level than the liver's
    tumor = maps == 2
    assert tumor.sum() >= 4
    # The label map and the image went through the same square: the tumor is where the image is bright.
    assert (tumor & bright).sum() >= 0.75 * tumor.sum() and (tumor & bright).sum() >= 0.75 * bright.sum()
    # Around the tumor, liver; every tumor pixel lies within the liver's bounding box.
    rows, cols = np.nonzero(maps >= LIVER_LABEL)
    tumor_rows, tumor_cols = np.nonzero(tumor)
    assert rows.min() < tumor_rows.min() and tumor_rows.max() <= rows.max()
    assert cols.min() <= tumor_cols.min() and tumor_cols.max() <= cols.max()
    # Spacing: the square's side in source pixels over the resolution, times the voxel size.
    square_side = sliced.spacing[0, 1] / 0.7 * 16
    np.testing.assert_allclose(sliced.spacing[0, 0] / sliced.spacing[0, 1], 0.8 / 0.7, rtol=1e-5)
    assert sliced.spacing[0, 2] == pytest.approx(2.5)
    assert (square_side == pytest.approx(96)) if crop is Crop.none else (square_side < 96)


def test_labels_encode_to_nested_mask_channels_and_decode_back() -> None:
    labels = torch.tensor([[[0, 1], [2, 1]]])

    channels = encode(labels)

    assert channels.shape == (1, MASK_CHANNELS, 2, 2)
    assert channels.tolist() == [[[[-1, 1], [1, 1]], [[-1, -1], [1, -1]]]]  # liver includes the tumor
    assert torch.equal(decode(channels), labels)
    # Generated channels are continuous: the threshold is 0, and tumor wins over liver.
    assert decode(torch.tensor([[[[0.2, -0.1]], [[0.3, 0.9]]]])).tolist() == [[[2, 2]]]


def test_dataset_masks_add_label_channels_and_key_their_own_cache_entry(tmp_path: Path) -> None:
    root = write_lits_dataset(tmp_path / "LiTS", range(1, 5))
    base = {
        "name": "lits",
        "root": str(root),
        "cache_dir": str(tmp_path / "cache"),
        "resolution": 16,
        "subset": "all",
        "num_workers": 1,
        "val_fraction": 0.25,
    }
    plain = prepare_dataset(OmegaConf.merge(OmegaConf.structured(DatasetConfig), base), seed=0)
    masked = prepare_dataset(OmegaConf.merge(OmegaConf.structured(DatasetConfig), {**base, "masks": True}), seed=0)

    assert masked.key != plain.key
    assert plain.train.images.shape[1] == 1 and masked.train.images.shape[1] == 1 + MASK_CHANNELS
    assert torch.equal(ct(masked.train.images), plain.train.images)
    maps = label_maps(masked.train.images)
    assert (maps >= LIVER_LABEL).flatten(1).any(dim=1).all()  # every kept slice shows liver
    tumor_class = masked.train.labels == TUMOR
    assert not (maps[~tumor_class] == 2).any()  # no tumor pixel on a healthy slice
    assert (maps[tumor_class] == 2).flatten(1).any(dim=1).float().mean() > 0.5
    assert torch.equal(masked.ct_only().train.images, plain.train.images)


FAMILIES = {
    "mlp": ["model=mlp", "model.generator_widths=[16]", "model.discriminator_widths=[16]", "model.latent_dim=8"],
    "dcgan": ["model=dcgan", "model.generator_channels=8", "model.discriminator_channels=8", "model.latent_dim=8"],
    "stylegan2": ["model=stylegan2", "model.channel_base=256", "model.channel_max=16", "model.latent_dim=8",
                  "model.style_dim=8", "model.mapping_layers=2"],
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("conditional", [False, True])
def test_every_gan_family_generates_the_slice_and_a_valid_label_map_jointly(
    compose_config: Compose, family: str, conditional: bool
) -> None:
    overrides = [*FAMILIES[family], "dataset.masks=true", "dataset.resolution=16", f"model.conditional={conditional}"]
    cfg = compose_config(overrides, hydra=False)
    generator, discriminator = build_gan(cfg)
    labels = torch.tensor([0, 1, 0, 1]) if conditional else None

    images = generate(generator, 4, "cpu", labels=labels, seed=0)

    assert images.shape == (4, 1 + MASK_CHANNELS, 16, 16)
    assert images.min() >= -1 and images.max() <= 1
    maps = label_maps(images)
    assert maps.shape == (4, 16, 16) and set(maps.unique().tolist()) <= {0, 1, 2}
    assert discriminator(images, labels).shape == (4,)


def test_ddpm_denoises_the_slice_and_its_mask_channels_together(compose_config: Compose) -> None:
    cfg = compose_config(["model=ddpm", "model.sample_steps=2", "model.channels=[8,8]",
                          "model.attention_levels=[false,false]", "model.norm_num_groups=4",
                          "model.num_head_channels=8"], hydra=False)
    torch.manual_seed(0)
    model = instantiate(cfg.model, resolution=8, num_classes=0, image_channels=1 + MASK_CHANNELS)

    images = model.sample(2, seed=0)

    assert images.shape == (2, 1 + MASK_CHANNELS, 8, 8)
    assert set(label_maps(images).unique().tolist()) <= {0, 1, 2}


def test_augmentation_moves_the_masks_with_the_slice_but_jitters_only_the_ct_intensity() -> None:
    labels = torch.zeros(2, 16, 16, dtype=torch.long)
    labels[:, 4:12, 4:12] = 1
    labels[:, 6:9, 6:9] = 2
    slices = torch.cat([torch.rand(2, 1, 16, 16) * 2 - 1, encode(labels)], dim=1)
    augment = Augment([AugmentOp.intensity, AugmentOp.translation], brightness=0.5, contrast=0.5, translation=0.25,
                      generator=torch.Generator().manual_seed(0))

    params = augment.sample(slices)
    augmented = augment.apply(slices, params)
    jittered_only = Augment([AugmentOp.intensity], brightness=0.5, contrast=0.5).apply(slices, params)

    assert torch.equal(jittered_only[:, 1:], slices[:, 1:]) and not torch.equal(jittered_only[:, :1], slices[:, :1])
    shifted = Augment([AugmentOp.translation], translation=0.25).apply(slices, params)
    assert torch.equal(augmented[:, 1:], shifted[:, 1:])  # the masks moved exactly as the image did
    assert set(label_maps(augmented).unique().tolist()) <= {0, 1, 2}


def test_sample_grids_show_the_mask_as_a_colour_overlay() -> None:
    labels = torch.zeros(1, 8, 8, dtype=torch.long)
    labels[0, 2:6, 2:6] = 1
    labels[0, 3:5, 3:5] = 2
    slices = torch.cat([torch.zeros(1, 1, 8, 8), encode(labels)], dim=1)  # mid-grey CT

    grid = image_grid(slices.repeat(2, 1, 1, 1), columns=2)[:, 2:10, 2:10]  # the first, inside the 2-pixel padding

    red, green, blue = grid
    assert torch.allclose(red[0, 0], green[0, 0]) and torch.allclose(green[0, 0], blue[0, 0])  # background: grey
    assert green[2, 2] > red[2, 2] and green[2, 2] > blue[2, 2]  # liver: green
    assert red[3, 3] > green[3, 3] and red[3, 3] > blue[3, 3]  # tumor: red
