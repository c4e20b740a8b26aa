"""CPU training runs of a few steps on a tiny phantom, end to end: TensorBoard events (read back
with TensorBoard's own EventAccumulator), checkpoints, sample grids and metrics.json; one run
through the CLI with the real FID; and the options that fail before any data is built."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Dict, Tuple

import pytest
import torch
from omegaconf import DictConfig
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData
from test_fid import PooledPixels, two_class_dataset
from tiny_gan import tiny_phantom_overrides

from liver_gan import device as device_module
from liver_gan.data.labels import HEALTHY, TUMOR
from liver_gan.errors import LiverGanError
from liver_gan.metrics import registry
from liver_gan.metrics.inception import FeatureExtractor, FIDWeightsUnavailable, check_weights_available
from liver_gan.runs import load_generator
from liver_gan.training.checkpoint import CHECKPOINT_KEYS, load_checkpoint
from liver_gan.training.device_images import DeviceImages
from liver_gan.training import gan_step, loop
from liver_gan.training.loop import train
from liver_gan.training.samples import draw_fixed_samples
from liver_gan.training.optim import build_optimizers
from liver_gan.training.schema import OptimizerImplementation

Compose = Callable[..., DictConfig]
LOGGED = ("loss/D", "loss/G", "D(x)", "D(G(z))")
BATCH_SIZE = 4
TRAINER = [
    "trainer.device=cpu",
    f"trainer.batch_size={BATCH_SIZE}",
    "trainer.epochs=2",
    "trainer.max_steps=null",
    "trainer.log_every=2",
    "trainer.sample_every=1",
    "trainer.checkpoint_every=1",
    "trainer.num_fixed_samples=8",
    "eval.enabled=false",
]


def tiny_run_overrides(data_dir: Path) -> list[str]:
    """The tiny phantom (its files, caches and reference statistics in data_dir), a tiny trainer."""
    return [*tiny_phantom_overrides(data_dir), f"eval.cache_dir={data_dir / 'reference'}", *TRAINER]


@pytest.fixture(scope="module")
def train_config(compose_config: Compose) -> Compose:
    """The task config of a tiny run on the phantom in a data dir; a model=... override replaces
    the tiny MLP."""

    def compose(data_dir: Path, *overrides: str) -> DictConfig:
        run = tiny_run_overrides(data_dir)
        if any(override.startswith("model=") for override in overrides):
            run = [override for override in run if not override.startswith("model")]
        return compose_config([*run, *overrides], hydra=False)

    return compose


def scalars(accumulator: EventAccumulator, tag: str) -> list[Tuple[int, float]]:
    return [(event.step, event.value) for event in accumulator.Scalars(tag)]


def steps_per_epoch(run_dir: Path, subset: str = "tumor") -> int:
    """ceil(N / batch): the last batch of an epoch takes the remaining slices."""
    counts = json.loads((run_dir / "dataset_summary.json").read_text())["counts"]["train"]
    num_slices = sum(counts.values()) if subset == "all" else counts[subset]
    return math.ceil(num_slices / BATCH_SIZE)


def read_events(run_dir: Path) -> EventAccumulator:
    """The run's events: one run under tb/, named after the run dir."""
    [events_dir] = (run_dir / "tb").iterdir()
    assert events_dir.name == run_dir.name
    accumulator = EventAccumulator(str(events_dir), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    return accumulator.Reload()


def hparams(events: EventAccumulator) -> dict[str, Any]:
    """The HPARAMS tab's values of the run: the flattened config and the ``result.*`` metrics."""
    content = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    values = HParamsPluginData.FromString(content).session_start_info.hparams
    return {name: getattr(value, value.WhichOneof("kind")) for name, value in values.items()}


@pytest.fixture(scope="module")
def finished_run(
    train_config: Compose, data_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Tuple[Path, Dict[str, Any]]:
    run_dir = tmp_path_factory.mktemp("run")
    return run_dir, train(train_config(data_dir), run_dir)


def test_tensorboard_holds_the_named_scalars_and_images(finished_run: Tuple[Path, Dict[str, Any]]) -> None:
    run_dir, _ = finished_run
    epoch = steps_per_epoch(run_dir)
    events = read_events(run_dir)
    tags = events.Tags()
    assert set(LOGGED) | {"lr/G", "lr/D", "speed/images_per_second"} <= set(tags["scalars"])
    # trainer.log_every=2, and the last step whatever the cadence
    log_steps = sorted(set(range(2, 2 * epoch + 1, 2)) | {2 * epoch})
    for tag in LOGGED:
        logged = scalars(events, tag)
        assert [step for step, _ in logged] == log_steps
        assert all(math.isfinite(value) for _, value in logged)
    for tag in ("D(x)", "D(G(z))"):
        assert all(0.0 < value < 1.0 for _, value in scalars(events, tag))
    assert [value for _, value in scalars(events, "lr/G")] == pytest.approx([2e-4] * len(log_steps))
    assert [event.step for event in events.Images("samples")] == [epoch, 2 * epoch]
    assert [event.step for event in events.Images("real")] == [0]
    assert "config/text_summary" in tags["tensors"]
    values = hparams(events)
    assert (values["result.steps"], values["result.status"], values["trainer.batch_size"]) == (2 * epoch, "completed", 4)
    # The final metrics live in the HPARAMS tab only: no one-point charts in SCALARS.
    assert not [tag for tag in tags["scalars"] if tag.startswith(("hparams", "result"))]


def test_checkpoints_hold_everything_to_continue(finished_run: Tuple[Path, Dict[str, Any]]) -> None:
    run_dir, _ = finished_run
    checkpoints = run_dir / "checkpoints"
    assert sorted(path.name for path in checkpoints.glob("*.pt")) == ["epoch_0001.pt", "epoch_0002.pt", "last.pt"]
    assert not list(checkpoints.glob("*.tmp"))
    first, last = load_checkpoint(checkpoints / "epoch_0001.pt"), load_checkpoint(checkpoints / "last.pt")
    assert set(CHECKPOINT_KEYS) <= set(last)
    epoch = steps_per_epoch(run_dir)
    assert (first["epoch"], first["step"], last["epoch"], last["step"]) == (1, epoch, 2, 2 * epoch)
    assert {"python", "numpy", "torch", "cuda", "batch_order"} <= set(last["rng"])
    assert last["fixed_noise"].shape == (8, 8) and last["fixed_labels"] is None
    assert last["config"]["trainer"]["batch_size"] == 4 and last["config"]["dataset"]["subset"] == "tumor"
    assert last["optimizer_g"]["state"] and last["optimizer_d"]["state"]
    generator, cfg = load_generator(run_dir, torch.device("cpu"))
    assert not generator.training and cfg.dataset.resolution == 32
    assert torch.equal(generator.state_dict()["layers.0.weight"], last["generator"]["layers.0.weight"])


def test_run_dir_holds_metrics_samples_and_dataset_summary(finished_run: Tuple[Path, Dict[str, Any]]) -> None:
    run_dir, returned = finished_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics == returned
    epoch = steps_per_epoch(run_dir)
    assert (metrics["status"], metrics["fid"], metrics["steps"], metrics["epochs"]) == ("completed", None, 2 * epoch, 2)
    assert metrics["train_seconds"] > 0 and metrics["images_per_second"] > 0
    grids = sorted((run_dir / "samples").iterdir())
    assert [path.name for path in grids] == ["epoch_0001.png", "epoch_0002.png"]
    # 8 fixed samples of 32x32 in 3 columns and 3 rows, 2 pixels of padding
    assert Image.open(grids[-1]).size == (3 * 34 + 2, 3 * 34 + 2)


def test_conditional_dcgan_run_samples_both_classes(train_config: Compose, data_dir: Path, tmp_path: Path) -> None:
    cfg = train_config(
        data_dir,
        "model=dcgan",
        "model.conditional=true",
        "model.generator_channels=4",
        "model.discriminator_channels=4",
        "dataset.subset=all",
        "trainer.max_steps=3",
    )
    metrics = train(cfg, tmp_path)
    assert steps_per_epoch(tmp_path, subset="all") > 3
    assert (metrics["steps"], metrics["epochs"]) == (3, 0)
    last = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    # 8 fixed samples in 3 columns: one full row pair, a healthy row above a tumor row
    assert last["fixed_labels"].tolist() == [HEALTHY] * 3 + [TUMOR] * 3
    assert [path.name for path in (tmp_path / "samples").iterdir()] == ["step_0000003.png"]
    assert not (tmp_path / "checkpoints" / "epoch_0000.pt").exists()


def test_conditional_fixed_noise_pairs_the_classes_column_by_column(train_config: Compose, data_dir: Path) -> None:
    cfg = train_config(data_dir, "model.conditional=true", "dataset.subset=all", "trainer.num_fixed_samples=19")
    fixed = draw_fixed_samples(cfg, 8, torch.device("cpu"))
    assert fixed.columns == 5 and len(fixed.noise) == 10  # rounded down to one full row pair
    assert fixed.labels.tolist() == [HEALTHY] * 5 + [TUMOR] * 5
    assert torch.equal(fixed.noise[:5], fixed.noise[5:])


@pytest.mark.parametrize("implementation", list(OptimizerImplementation))
def test_every_optimizer_implementation_builds(
    train_config: Compose, data_dir: Path, implementation: OptimizerImplementation
) -> None:
    cfg = train_config(data_dir, f"optimizer.implementation={implementation.value}", "optimizer.d_lr=1e-3")
    networks = (torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    optimizer_g, optimizer_d = build_optimizers(cfg.optimizer, *networks, torch.device("cpu"))
    assert (optimizer_g.defaults["lr"], optimizer_d.defaults["lr"]) == (2e-4, 1e-3)
    expected = {"auto": (True, None), "fused": (True, None), "foreach": (None, True), "for_loop": (None, False)}
    assert (optimizer_g.defaults["fused"], optimizer_g.defaults["foreach"]) == expected[implementation.value]


def test_amp_on_cpu_fails_before_any_dataset_build(train_config: Compose, tmp_path: Path) -> None:
    cfg = train_config(tmp_path / "data", "trainer.amp=true")
    with pytest.raises(LiverGanError, match="trainer.amp=true needs a CUDA device"):
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "data").exists()


def test_a_missing_eval_inception_weights_file_fails_before_any_dataset_build(
    train_config: Compose, tmp_path: Path
) -> None:
    cfg = train_config(tmp_path / "data", "eval.enabled=true", f"eval.inception_weights={tmp_path / 'nowhere.pth'}")
    with pytest.raises(LiverGanError, match="eval.inception_weights=.*nowhere.pth: no such file"):
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "data").exists()


def test_weights_that_must_be_downloaded_are_announced_at_the_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    with caplog.at_level(logging.WARNING, logger="liver_gan.metrics.inception"):
        check_weights_available(None)
    assert f"is not at {tmp_path / 'empty_torch_home'}" in caplog.text


def test_missing_fid_weights_still_save_the_run(
    train_config: Compose, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unavailable(weights: str | None, device: torch.device) -> None:
        raise FIDWeightsUnavailable("put the weights file in place")

    monkeypatch.setattr("liver_gan.metrics.evaluate.load_feature_extractor", unavailable)
    with pytest.raises(FIDWeightsUnavailable, match="put the weights file in place"):
        train(train_config(data_dir, "eval.enabled=true", "trainer.max_steps=2"), tmp_path)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert (metrics["status"], metrics["fid"], metrics["steps"]) == ("fid_unavailable", None, 2)
    assert (tmp_path / "checkpoints" / "last.pt").is_file()


@pytest.mark.slow
def test_cli_run_with_real_fid(fid_weights: Path, data_dir: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "liver_gan.cli.train",
            *tiny_run_overrides(data_dir),
            "trainer.max_steps=3",
            "eval.enabled=true",
            "eval.num_samples=16",
            "eval.max_real=16",
            "eval.kid.num_subsets=2",
            "eval.kid.subset_size=8",
            f"hydra.run.dir={run_dir}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed" and math.isfinite(metrics["fid"]) and metrics["fid"] > 0
    assert (metrics["num_real"], metrics["num_fake"]) == (16, 16)
    assert f"tensorboard --logdir {run_dir / 'tb'}" in result.stdout
    # The final table, on the console and in train.log alike.
    table = [
        "result: completed after 3 steps",
        f"  FID        {metrics['fid']:.4g}",
        "  measured on 16 generated and 16 real slices",
        f"run dir: {run_dir}",
        f"last samples: {run_dir / 'samples'}",
    ]
    for output in (result.stdout, (run_dir / "train.log").read_text()):
        assert all(line in output for line in table), output[-2000:]
    assert hparams(read_events(run_dir))["result.fid"] == pytest.approx(metrics["fid"])


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["loss=hinge", "loss.gradient_penalty=1"], "loss.gradient_penalty=1.0 has no effect with loss=hinge"),
        (["eval.enabled=true", "eval.num_samples=1"], "eval.num_samples=1 must be at least 2"),
        (["eval.enabled=true", "eval.max_real=1"], "eval.max_real=1 must be at least 2"),
        (["eval.enabled=true", "eval.kid.num_subsets=0"], "eval.kid.num_subsets=0 must be at least 1"),
        (["model=dcgan", "dataset.resolution=63"], "dataset.resolution=63 does not suit model=dcgan"),
        (["model.latent_dim=0"], "model.latent_dim must be positive, got [0]"),
        (["trainer.keep_last_n=-1"], "trainer.keep_last_n=-1 must be at least 0"),
        (["eval.enabled=true", "eval.kid.subset_size=1"], "eval.kid.subset_size=1 must be at least 2"),
        (["eval.enabled=true", "eval.batch_size=0"], "eval.batch_size=0 must be at least 1"),
        (
            ["eval.enabled=true", "eval.metrics=[fid,fdi]"],
            "eval.metrics: unknown metric fdi; known metrics: fid, kid, precision_recall, density_coverage, "
            "diversity, memorisation",
        ),
        (
            ["eval.enabled=true", "dataset.val_fraction=0", "eval.real_pool=val"],
            "eval.real_pool=val but dataset.val_fraction=0 leaves no validation slices",
        ),
    ],
)
def test_bad_loss_eval_and_model_options_fail_before_the_dataset_build(
    train_config: Compose, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, overrides: list[str], message: str
) -> None:
    """Not after the build, nor (for eval.*) after a whole training run, nor (for model shapes)
    wrapped in Hydra's "Error in call to target"."""

    def no_build(*args: object, **kwargs: object) -> None:
        raise AssertionError("the dataset build started before the options were checked")

    monkeypatch.setattr(loop, "prepare_dataset", no_build)
    with pytest.raises(LiverGanError, match=re.escape(message)) as refused:
        train(train_config(tmp_path / "data", *overrides), tmp_path / "run")
    assert "\n" not in str(refused.value)


def test_a_real_pool_too_small_for_the_metrics_stops_before_training(
    train_config: Compose, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What only the built dataset tells (one validation slice) is checked before training, not after it."""
    one_val_slice = two_class_dataset(num_train=24, num_val=1)
    monkeypatch.setattr(loop, "prepare_dataset", lambda *args: one_val_slice)

    def no_fit(*args: object) -> None:
        raise AssertionError("training started with a real pool the metrics cannot use")

    monkeypatch.setattr(loop, "fit", no_fit)
    cfg = train_config(data_dir, "eval.enabled=true", "eval.real_pool=val")
    with pytest.raises(LiverGanError, match="eval.real_pool=val holds 1 images"):
        train(cfg, tmp_path)


def test_a_run_with_eval_metrics_fid_computes_only_fid(
    train_config: Compose, data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    extractor = FeatureExtractor(PooledPixels(), "pooled.pth", "0" * 64, torch.device("cpu"))
    monkeypatch.setattr("liver_gan.metrics.evaluate.load_feature_extractor", lambda weights, device: extractor)
    for name, metric in list(registry._METRICS.items()):
        if name != "fid":
            monkeypatch.setitem(registry._METRICS, name, dataclasses.replace(metric, compute=None))
    fid_only = ["eval.enabled=true", "eval.metrics=[fid]", "eval.num_samples=8", "eval.max_real=8"]
    cfg = train_config(data_dir, *fid_only, "trainer.max_steps=1")
    train(cfg, tmp_path)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["metrics"] == ["fid"] and metrics["fid"] > 0 and metrics["num_fake"] == 8
    left_out = {"kid_mean", "kid_std", "precision", "recall", "diversity_ms_ssim", "memorisation_closest_pairs"}
    assert not left_out & set(metrics)
    assert not (tmp_path / "memorisation_closest_pairs.png").exists()


def test_a_run_trains_on_float32_batches_of_a_float16_training_set(
    train_config: Compose,
    data_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    held: list[torch.dtype] = []
    batches: list[torch.dtype] = []
    clock_reads: list[torch.device] = []

    class Recorded(DeviceImages):
        def __init__(self, images: torch.Tensor, device: torch.device) -> None:
            super().__init__(images, device)
            held.append(self.images.dtype)

    def recorded_step(gan, loss_cfg, real, labels, autocast, noise):  # type: ignore[no-untyped-def]
        batches.append(real.dtype)
        return train_step(gan, loss_cfg, real, labels, autocast, noise)

    train_step = gan_step.train_step
    synchronize = device_module.synchronize
    monkeypatch.setattr(loop, "DeviceImages", Recorded)
    monkeypatch.setattr(gan_step, "train_step", recorded_step)
    monkeypatch.setattr(device_module, "synchronize", lambda device: clock_reads.append(device) or synchronize(device))
    metrics = train(train_config(data_dir, "trainer.max_steps=3", "trainer.log_every=1"), tmp_path / "run")
    assert held == [torch.float16]
    assert batches == [torch.float32] * metrics["steps"]
    # Every logged step reads the clock once the device is done (CPU here: the call is a no-op).
    assert len(clock_reads) >= metrics["steps"]
