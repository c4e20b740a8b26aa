"""experiment=stylegan2_conditional end to end (issue 14): a tiny StyleGAN2 with DiffAugment, lazy
R1 and an EMA copy trains on the phantom's healthy and tumor slices, draws healthy/tumor grid rows
and gets per-class metrics, as conditional DCGAN runs do."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import pytest
from omegaconf import DictConfig
from PIL import Image

from liver_gan.data.labels import HEALTHY, TUMOR
from liver_gan.training.checkpoint import EMA_KEY, load_checkpoint
from liver_gan.training.loop import train

from test_run_budget_and_ema import pixel_fid  # noqa: F401  (a fixture: FID on pooled pixels only)

Compose = Callable[..., DictConfig]
TINY_STYLEGAN2 = [
    "model.channel_base=256",  # 4 channels at 64 px, 16 from 16 px down
    "model.channel_max=16",
    "model.latent_dim=8",
    "model.style_dim=8",
    "model.mapping_layers=2",
    "dataset.resolution=64",  # StyleGAN2's smallest size
]


@pytest.mark.usefixtures("pixel_fid")
def test_the_conditional_stylegan2_preset_trains_samples_both_classes_and_scores_each(
    compose_config: Compose, tiny_phantom: list[str], tmp_path: Path
) -> None:
    cfg = compose_config(
        [
            "experiment=stylegan2_conditional",
            # the tiny phantom without its model, subset and EMA: the preset sets those
            *[override for override in tiny_phantom if not override.startswith(("model", "dataset.subset", "trainer.ema_kimg"))],
            *TINY_STYLEGAN2,
            "trainer.device=cpu",
            "trainer.batch_size=4",
            "trainer.max_steps=4",
            "trainer.num_fixed_samples=8",
            "loss.r1_interval=2",  # lazy R1 on steps 0 and 2 of these 4
            "eval.metrics=[fid]",
            "eval.num_samples=16",
            "eval.max_real=16",
        ],
        hydra=False,
    )
    assert cfg.augment.ops and cfg.model.conditional and cfg.trainer.ema_kimg
    metrics = train(cfg, tmp_path)

    last = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert last["fixed_labels"].tolist() == [HEALTHY] * 3 + [TUMOR] * 3
    assert EMA_KEY in last and last["family_state"]["d_steps"] == 4
    (grid,) = (tmp_path / "samples").iterdir()
    assert Image.open(grid).size == (3 * 66 + 2, 2 * 66 + 2)  # a healthy row above a tumor row
    assert set(metrics["per_class"]) == {"healthy", "tumor"}
    assert all(row["fid"] is not None and row["num_fake"] > 1 for row in metrics["per_class"].values())
    assert json.loads((tmp_path / "metrics.json").read_text())["per_class"] == metrics["per_class"]
