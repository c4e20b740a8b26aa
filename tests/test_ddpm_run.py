"""model=ddpm is a run like any other (issue 15): liver-gan-train trains, logs, samples and
checkpoints it in the shared loop and resumes it exactly; liver-gan-sample (with its DDIM step
override), -eval, -utility, -vtt, a multirun sweep and liver-gan-summary work on its runs."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pytest
import torch
from omegaconf import DictConfig
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_fid import PooledPixels
from tiny_gan import tiny_ddpm_overrides

from liver_gan.cli.evaluate import main as eval_main
from liver_gan.cli.sample import main as sample_main
from liver_gan.cli.summary import main as summary_main
from liver_gan.cli.utility import main as utility_main
from liver_gan.cli.vtt import main as vtt_main
from liver_gan.errors import LiverGanError
from liver_gan.metrics.inception import FeatureExtractor
from liver_gan.metrics.schema import EvalConfig
from liver_gan.models.ddpm import DiffusionModel
from liver_gan.runs import load_generator
from liver_gan.sampling import generate
from liver_gan.training.checkpoint import EMA_KEY, load_checkpoint
from liver_gan.training.loop import train

Compose = Callable[..., DictConfig]
TRAINER = [
    "trainer.device=cpu",
    "trainer.batch_size=8",
    "trainer.epochs=3",
    "trainer.max_steps=null",
    "trainer.log_every=2",
    "trainer.sample_every=1",
    "trainer.checkpoint_every=1",
    "trainer.num_fixed_samples=4",
    "eval.enabled=false",
]
SMALL_EVAL = [
    "eval.enabled=true",
    "eval.num_samples=8",
    "eval.max_real=8",
    "eval.kid.num_subsets=2",
    "eval.kid.subset_size=4",
]
CONDITIONAL = ["model.conditional=true", "dataset.subset=all", "model.guidance_scale=2"]


@pytest.fixture(scope="module")
def ddpm_config(compose_config: Compose, data_dir: Path) -> Compose:
    base = [*tiny_ddpm_overrides(data_dir), f"eval.cache_dir={data_dir / 'reference'}", *TRAINER]
    return lambda *overrides: compose_config([*base, *overrides], hydra=False)


@pytest.fixture(scope="module")
def pixel_features() -> Iterator[None]:
    """Every metric on pooled pixels instead of Inception features: an evaluation in seconds."""
    extractor = FeatureExtractor(PooledPixels(), "pooled.pth", "0" * 64, torch.device("cpu"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("liver_gan.metrics.evaluate.load_feature_extractor", lambda weights, device: extractor)
        yield


@pytest.fixture(scope="module", autouse=True)
def restore_determinism() -> Iterator[None]:
    yield
    torch.use_deterministic_algorithms(False)


@pytest.mark.slow
def test_a_capped_ddpm_run_continues_exactly(ddpm_config: Compose, tmp_path: Path) -> None:
    """Stopped mid-epoch by trainer.max_steps and continued: the weights, Adam's moments, the EMA
    copy, the random streams and the logged loss equal an uninterrupted run's (deterministic, CPU)."""
    exact = ["trainer.deterministic=true", "trainer.resume=auto", "trainer.ema_kimg=0.02", "trainer.max_steps=6"]
    train(ddpm_config(*exact), tmp_path / "uninterrupted")
    train(ddpm_config(*exact[:-1], "trainer.max_steps=4"), tmp_path / "capped")
    assert load_checkpoint(tmp_path / "capped" / "checkpoints" / "last.pt")["step"] == 4
    time.sleep(1.1)  # TensorBoard names event files by the second
    train(ddpm_config(*exact), tmp_path / "capped")

    reference = load_checkpoint(tmp_path / "uninterrupted" / "checkpoints" / "last.pt")
    resumed = load_checkpoint(tmp_path / "capped" / "checkpoints" / "last.pt")
    assert resumed["step"] == reference["step"] == 6
    for key in ("generator", EMA_KEY):
        for name, tensor in reference[key].items():
            assert torch.equal(resumed[key][name], tensor), f"{key}.{name}"
    for index, state in reference["optimizer"]["state"].items():
        for name, value in state.items():
            assert torch.equal(resumed["optimizer"]["state"][index][name], value), f"optimizer.{index}.{name}"
    assert torch.equal(resumed["rng"]["torch"], reference["rng"]["torch"])
    losses = [logged(run, "loss/diffusion") for run in (tmp_path / "uninterrupted", tmp_path / "capped")]
    assert losses[1] == losses[0] and len(losses[0]) == 3  # steps 2, 4 and 6


def logged(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    events = EventAccumulator(str(run_dir / "tb" / run_dir.name), size_guidance={"scalars": 0, "images": 0}).Reload()
    return [(event.step, event.value) for event in events.Scalars(tag)]


def test_optimizer_d_lr_is_refused_for_a_diffusion_model(ddpm_config: Compose, tmp_path: Path) -> None:
    with pytest.raises(LiverGanError, match="optimizer.d_lr=0.001 is a discriminator's learning rate") as refused:
        train(ddpm_config("optimizer.d_lr=1e-3"), tmp_path)
    assert "\n" not in str(refused.value)


@pytest.fixture(scope="module")
def conditional_run(ddpm_config: Compose, pixel_features: None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A conditional, guided tiny ddpm with an EMA copy, trained for a few steps and evaluated with every metric."""
    run_dir = tmp_path_factory.mktemp("ddpm_run")
    train(ddpm_config(*CONDITIONAL, *SMALL_EVAL, "trainer.max_steps=3", "trainer.ema_kimg=0.02"), run_dir)
    return run_dir


@pytest.mark.slow
def test_a_conditional_ddpm_run_logs_samples_checkpoints_and_evaluates(conditional_run: Path) -> None:
    metrics = json.loads((conditional_run / "metrics.json").read_text())
    assert (metrics["status"], metrics["stop_reason"], metrics["steps"]) == ("completed", "max_steps", 3)
    assert (metrics["sample_steps"], metrics["guidance_scale"]) == (2, 2.0)
    # Every default metric; the masks checks are left out for slices without masks (dataset.masks=false).
    assert metrics["metrics"] == [name for name in EvalConfig().metrics if name != "masks"]
    assert metrics["fid"] > 0 and set(metrics["per_class"]) == {"healthy", "tumor"}
    assert (conditional_run / "samples" / "step_0000003.png").is_file()
    events = EventAccumulator(str(conditional_run / "tb" / conditional_run.name), size_guidance={"images": 0}).Reload()
    assert {"loss/diffusion", "lr", "speed/images_per_second"} <= set(events.Tags()["scalars"])
    assert {"samples", "real"} <= set(events.Tags()["images"])
    checkpoint = load_checkpoint(conditional_run / "checkpoints" / "last.pt")
    assert {"generator", EMA_KEY, "optimizer"} <= set(checkpoint) and "discriminator" not in checkpoint


@pytest.mark.slow
def test_liver_gan_sample_takes_a_ddim_step_override(conditional_run: Path, tmp_path: Path) -> None:
    sys.argv = ["liver-gan-sample", f"checkpoint={conditional_run}", "num_samples=3", "sample_steps=1",
                f"out={tmp_path}", f"hydra.run.dir={tmp_path / 'hydra'}", "device=cpu"]
    sample_main()
    tumor = torch.from_numpy(np.load(tmp_path / "tumor.npy"))
    model, _ = load_generator(conditional_run, torch.device("cpu"))
    assert isinstance(model, DiffusionModel) and model.sample_steps == 2
    labels = torch.ones(3, dtype=torch.long)
    assert torch.equal(tumor, model.sample(3, labels, seed=0, sample_steps=1))
    assert not torch.equal(tumor, generate(model, 3, "cpu", labels=labels, seed=0))  # the run's 2 steps


@pytest.mark.slow
@pytest.mark.usefixtures("pixel_features")
def test_liver_gan_eval_records_the_sample_steps(conditional_run: Path, tmp_path: Path) -> None:
    sys.argv = ["liver-gan-eval", f"checkpoint={conditional_run}", "eval.metrics=[fid]", "eval.num_samples=8",
                "eval.max_real=8", f"hydra.run.dir={tmp_path}", "device=cpu"]
    eval_main()
    metrics = json.loads((tmp_path / "eval.json").read_text())
    assert metrics["sample_steps"] == 2 and metrics["fid"] > 0


@pytest.mark.slow
def test_liver_gan_utility_and_vtt_use_a_ddpm_run(conditional_run: Path, tmp_path: Path) -> None:
    sys.argv = ["liver-gan-utility", f"generator={conditional_run}", "ratios=[0.5]", "classifier.epochs=1",
                "classifier.batch_size=16", "classifier.model.channels=[4,8]", "device=cpu",
                f"hydra.run.dir={tmp_path / 'utility'}"]
    utility_main()
    report = json.loads((tmp_path / "utility" / "utility.json").read_text())
    assert list(report["arms"]) == ["real_only", "real_plus_50pct", "synthetic_only"]
    vtt_main(["make", "--generator", str(conditional_run), "--out", str(tmp_path / "vtt"), "--device", "cpu",
              "--num", "4", "--size", "64"])
    assert any((tmp_path / "vtt").iterdir())


@pytest.mark.slow
def test_a_ddpm_sweep_and_its_summary(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    train_script = str(Path(sys.executable).with_name("liver-gan-train"))
    result = subprocess.run(
        [train_script, "--multirun", *tiny_ddpm_overrides(tmp_path), *TRAINER, "trainer.max_steps=2",
         "model.prediction=epsilon,v", "hydra.sweep.dir=sweep", "hydra.sweep.subdir=${hydra.job.num}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = sorted((tmp_path / "sweep").glob("*/metrics.json"))
    assert [json.loads(job.read_text())["status"] for job in jobs] == ["completed", "completed"]
    summary_main([str(tmp_path / "sweep")])
    printed = capsys.readouterr().out
    assert "2 jobs: 2 completed" in printed
    assert "| completed | epsilon |" in printed and "| completed | v |" in printed  # the swept column
