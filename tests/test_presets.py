"""Presets that fit the model chosen (issue 25): every experiment composes with every model and the
valid pairs run ``debug=smoke``; a pair the preset cannot serve fails in one line (its GAN loss on
the diffusion model at composition, naming the loss; the inpainter without liver crops and masks at
start); the default experiment sizes a diffusion model to its
own cost; experiment=stylegan2 takes FID snapshots and keeps best.pt."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig

from liver_gan.cli import config_dir
from liver_gan.errors import LiverGanError
from liver_gan.training.gan_step import check_options
from liver_gan.training.loop import train

from test_run_budget_and_ema import pixel_fid  # noqa: F401  (a fixture: FID on pooled pixels only)
from test_stylegan2_run import TINY_STYLEGAN2
from tiny_gan import tiny_ddpm_overrides

Compose = Callable[..., DictConfig]
EXPERIMENTS = sorted(path.stem for path in (config_dir() / "experiment").glob("*.yaml"))
MODELS = sorted(path.stem for path in (config_dir() / "model").glob("*.yaml"))
TINY_MODEL = {
    "mlp": ["model.generator_widths=[32]", "model.discriminator_widths=[32]", "model.latent_dim=8"],
    "dcgan": ["model.generator_channels=8", "model.discriminator_channels=8", "model.latent_dim=8"],
    "dcgan_small": ["model.generator_channels=8", "model.discriminator_channels=8", "model.latent_dim=8"],
    "stylegan2": TINY_STYLEGAN2,
    "ddpm": [override for override in tiny_ddpm_overrides(Path()) if override.startswith("model.")],
    "inpaint": ["model.channels=[4,8]", "model.strides=[2]", "model.discriminator_channels=4"],
}
# The inpainter learns from liver crops with their masks, which only its own preset gives.
INPAINT_NEEDS = "model=inpaint fills lesions in liver-centred crops|model=inpaint learns from each slice's tumor mask"
# A GAN-only preset sets what the other families lack: a loss (ddpm has none), model keys of one
# architecture (stylegan2_gpu's widths, thesis's latent_dim).
COMPOSITION_REFUSALS = ("Could not override 'loss'", "not in 'InpaintConfig'", "not in 'DDPMConfig'", "not in 'DCGANConfig'",
                        "not in 'MLPConfig'")


def expected_outcome(model: str, experiment: str) -> str:
    """What the pair must do: ``runs``, or fail in one line at ``composition`` or at ``start``."""
    if experiment == "stylegan2_gpu" and model != "stylegan2":
        return "composition"  # the paper's StyleGAN2 widths
    if model == "ddpm":
        return "runs" if experiment in ("quickstart", "inpaint") else "composition"
    if model == "inpaint":
        if experiment == "inpaint":
            return "runs"
        return "composition" if experiment == "thesis" else "start"
    return "runs"


def test_every_model_has_tiny_settings_here() -> None:
    assert sorted(TINY_MODEL) == MODELS, "a new model needs its tiny settings in TINY_MODEL"


def smoke(data_dir: Path, experiment: str, model: str) -> list[str]:
    return [
        f"experiment={experiment}",
        f"model={model}",
        "debug=smoke",
        *TINY_MODEL[model],
        "dataset.resolution=64",
        f"dataset.root={data_dir / 'smoke_phantom'}",
        f"dataset.cache_dir={data_dir / 'cache'}",
        "dataset.num_workers=1",
        "trainer.device=cpu",
        "trainer.amp=false",  # experiment=stylegan2_gpu's bf16 autocast needs a GPU
        "trainer.batch_size=4",
        "trainer.max_steps=2",
        "eval.enabled=false",
    ]


def composes(compose_config: Compose, overrides: list[str]) -> DictConfig | ConfigCompositionException:
    try:
        return compose_config(overrides, hydra=False)
    except ConfigCompositionException as error:
        return error


@pytest.mark.slow
@pytest.mark.parametrize("experiment", EXPERIMENTS)
@pytest.mark.parametrize("model", MODELS)
def test_every_experiment_with_every_model_smoke_runs_or_fails_in_one_line(
    compose_config: Compose, data_dir: Path, tmp_path: Path, experiment: str, model: str
) -> None:
    cfg = composes(compose_config, smoke(data_dir, experiment, model))
    outcome = expected_outcome(model, experiment)
    if outcome == "composition":
        assert isinstance(cfg, ConfigCompositionException), f"{experiment} with model={model} should not compose"
        assert any(reason in str(cfg) for reason in COMPOSITION_REFUSALS), cfg
        return
    assert not isinstance(cfg, ConfigCompositionException), cfg
    if outcome == "start":
        with pytest.raises(LiverGanError, match=INPAINT_NEEDS):
            train(cfg, tmp_path / "run")
        return
    metrics = train(cfg, tmp_path / "run")
    assert metrics["status"] == "completed"
    assert metrics["steps"] == 2


def test_the_default_experiment_gives_a_diffusion_model_its_own_budget_and_no_loss(compose_config: Compose) -> None:
    gan = compose_config([], hydra=False)
    ddpm = compose_config(["model=ddpm"], hydra=False)
    assert ddpm.loss is None and gan.loss is not None
    assert (ddpm.trainer.max_steps, ddpm.trainer.batch_size, ddpm.eval.num_samples) == (600, 16, 64)
    assert (gan.trainer.max_steps, gan.trainer.batch_size, gan.eval.num_samples) == (700, 32, 256)


DIFFAUGMENT_OPS = ["translation", "cutout", "intensity"]


@pytest.mark.parametrize(
    "overrides, ops",
    [
        ([], DIFFAUGMENT_OPS),  # the default run's GAN
        (["model=mlp"], DIFFAUGMENT_OPS),
        (["~experiment", "model=stylegan2"], DIFFAUGMENT_OPS),  # the GAN's own default, whatever the preset
        (["augment=none"], []),
        (["model=ddpm"], []),  # a diffusion model has no D to augment for
        (["experiment=inpaint"], []),
        (["experiment=thesis"], []),  # the thesis trained without augmentation
    ],
)
def test_a_gan_takes_diffaugment_by_default_and_the_other_families_none(
    compose_config: Compose, overrides: list[str], ops: list[str]
) -> None:
    cfg = compose_config(overrides, hydra=False)
    assert [op.value for op in cfg.augment.ops] == ops


def test_diffaugment_beside_the_diffusion_model_is_refused_in_one_line(compose_config: Compose, tmp_path: Path) -> None:
    cfg = compose_config(["model=ddpm", "augment=diffaugment", f"dataset.root={tmp_path / 'phantom'}"], hydra=False)
    with pytest.raises(LiverGanError, match="use augment=none"):
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_loss_added_to_the_diffusion_model_is_refused_in_one_line(compose_config: Compose, tmp_path: Path) -> None:
    cfg = compose_config(["model=ddpm", "+loss=hinge", f"dataset.root={tmp_path / 'phantom'}"], hydra=False)
    with pytest.raises(LiverGanError, match="loss=hinge is a GAN's loss and model=ddpm has none"):
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_gan_without_a_loss_is_refused_naming_what_to_add(compose_config: Compose) -> None:
    cfg = compose_config(["model=dcgan"], hydra=False)
    cfg.loss = None
    with pytest.raises(LiverGanError, match="no loss was chosen; add loss=nonsaturating"):
        check_options(cfg)


@pytest.mark.slow
@pytest.mark.usefixtures("pixel_fid")
def test_the_stylegan2_preset_writes_fid_snapshots_and_keeps_best(
    compose_config: Compose, tiny_phantom: list[str], tmp_path: Path
) -> None:
    preset = compose_config(["experiment=stylegan2"], hydra=False)
    assert preset.eval.every_kimg is not None  # on by default, for the long GPU runs it is made for
    phantom = [override for override in tiny_phantom if not override.startswith(("model", "dataset.subset"))]
    cfg = compose_config(
        [
            "experiment=stylegan2",
            *phantom,
            *TINY_STYLEGAN2,
            "trainer.device=cpu",
            "trainer.batch_size=4",
            "trainer.max_steps=4",
            "eval.metrics=[fid]",
            "eval.num_samples=8",
            "eval.max_real=8",
            "eval.snapshot_samples=4",
            "eval.every_kimg=0.008",  # the preset's period, scaled to a 4-step run: two snapshots
        ],
        hydra=False,
    )
    train(cfg, tmp_path)
    snapshots = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(snapshots) == 2
    assert (tmp_path / "checkpoints" / "best.pt").is_file()
