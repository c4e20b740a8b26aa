"""Run directories are never clobbered (issue 11): unique default dirs, a fresh run refuses a dir
that holds checkpoints, a refused resume leaves the dir as it was, ``trainer.resume=auto`` takes
the run's saved overrides, changed optimizer settings are applied on resume, stale temporaries
are removed, ``trainer.keep_last_n`` prunes epoch checkpoints, and every error reaches train.log."""

from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path
from typing import Callable, Iterator

import pytest
import torch
import yaml
from hydra.core.utils import setup_globals
from omegaconf import DictConfig, OmegaConf

from liver_gan.cli.train import main as train_main
from liver_gan.errors import LiverGanError
from liver_gan.training.checkpoint import load_checkpoint
from liver_gan.training.loop import train
from liver_gan.training.run_dir import claim_new_dir, hold_run_dir, register_run_dir_resolver

TINY_TRAINER = [
    "trainer.device=cpu",
    "trainer.batch_size=4",
    "trainer.log_every=1",
    "trainer.sample_every=1",
    "trainer.checkpoint_every=1",
    "trainer.num_fixed_samples=4",
    "trainer.max_steps=2",
    "eval.enabled=false",
]


Compose = Callable[..., DictConfig]


@pytest.fixture(scope="session")
def tiny_overrides(tiny_phantom: list[str]) -> list[str]:
    """A tiny MLP on the tiny phantom for two steps, as command-line overrides."""
    return [*tiny_phantom, *TINY_TRAINER]


@pytest.fixture(scope="session")
def train_config(compose_config: Compose, tiny_overrides: list[str]) -> Compose:
    """The task config of a tiny run, with more overrides."""
    return lambda *overrides: compose_config([*tiny_overrides, *overrides], hydra=False)


def run_cli(monkeypatch: pytest.MonkeyPatch, *argv: str) -> None:
    monkeypatch.setattr(sys, "argv", ["liver-gan-train", *argv])
    train_main()


def snapshot(run_dir: Path) -> dict[str, bytes]:
    """Every file of the run dir but the log, by relative path."""
    return {
        str(path.relative_to(run_dir)): path.read_bytes()
        for path in sorted(run_dir.rglob("*"))
        if path.is_file() and path.name != "train.log"
    }


@pytest.fixture
def stopped_clock() -> Iterator[None]:
    """resolved_run_dir stops Hydra's ${now:}; give the real one back afterwards."""
    yield
    setup_globals()


def resolved_run_dir(compose_config: Compose, tool: str, *overrides: str) -> str:
    """The default hydra.run.dir of ``tool`` started at 2024-05-01 12:00:00, as the CLI resolves it."""
    cfg = compose_config(list(overrides), config_name=tool)
    register_run_dir_resolver()  # as liver_gan.cli.run_hydra_app does
    OmegaConf.register_new_resolver("now", lambda pattern: "2024-05-01_12-00-00", replace=True)
    return cfg.hydra.run.dir


@pytest.mark.parametrize("tool", ["train", "evaluate", "sample", "utility", "prepare"])
def test_two_runs_started_in_the_same_second_get_their_own_run_dirs(
    compose_config: Compose, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stopped_clock: None, tool: str
) -> None:
    monkeypatch.chdir(tmp_path)
    first, second = resolved_run_dir(compose_config, tool), resolved_run_dir(compose_config, tool)
    assert (first, second) == (f"outputs/{tool}/2024-05-01_12-00-00", f"outputs/{tool}/2024-05-01_12-00-00-2")
    assert (tmp_path / first).is_dir() and (tmp_path / second).is_dir()


def test_name_goes_into_the_run_dir(compose_config: Compose, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stopped_clock: None) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolved_run_dir(compose_config, "train", "name=lr sweep/2") == "outputs/train/2024-05-01_12-00-00_lr_sweep_2"


def test_a_claimed_dir_is_never_handed_out_again(tmp_path: Path) -> None:
    claims = [claim_new_dir(str(tmp_path / "run"), "a") for _ in range(3)]
    assert claims == [str(tmp_path / "run_a"), str(tmp_path / "run_a-2"), str(tmp_path / "run_a-3")]


@pytest.fixture
def finished_run(train_config: Compose, tmp_path: Path) -> Path:
    run_dir = tmp_path / "run"
    train(train_config(), run_dir)
    return run_dir


def test_a_fresh_run_refuses_a_dir_that_holds_checkpoints(train_config: Compose, finished_run: Path) -> None:
    before = snapshot(finished_run)
    with pytest.raises(LiverGanError) as refused:
        train(train_config("trainer.max_steps=1"), finished_run)
    message = str(refused.value)
    assert "\n" not in message and "trainer.resume=auto" in message and "hydra.run.dir" in message
    assert snapshot(finished_run) == before


def test_trainer_overwrite_replaces_the_run(train_config: Compose, finished_run: Path) -> None:
    (finished_run / "checkpoints" / "epoch_0007.pt").write_bytes(b"an old run's")
    train(train_config("trainer.max_steps=1", "trainer.overwrite=true"), finished_run)
    assert load_checkpoint(finished_run / "checkpoints" / "last.pt")["step"] == 1
    assert not (finished_run / "checkpoints" / "epoch_0007.pt").exists()


def test_two_runs_cannot_work_in_one_run_dir(train_config: Compose, tmp_path: Path) -> None:
    with hold_run_dir(tmp_path):
        with pytest.raises(LiverGanError, match="another liver-gan-train is running in"):
            train(train_config(), tmp_path)


def test_resume_auto_takes_the_runs_saved_overrides(
    tiny_overrides: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = tmp_path / "run"
    run_cli(monkeypatch, *tiny_overrides, f"hydra.run.dir={run_dir}")
    assert yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text()) == tiny_overrides

    run_cli(monkeypatch, f"hydra.run.dir={run_dir}", "trainer.resume=auto", "trainer.max_steps=3")
    last = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    assert last["step"] == 3
    assert last["config"]["model"]["generator_widths"] == [32]  # from the saved overrides, not the default model
    saved = yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text())
    kept = [override for override in tiny_overrides if override != "trainer.max_steps=2"]
    assert saved == [*kept, "trainer.resume=auto", "trainer.max_steps=3"]


@pytest.mark.parametrize(
    "conflict, named",
    [
        ("dataset.val_fraction=0.5", "dataset.val_fraction (0.34 there, 0.5 here)"),  # before the dataset build
        ("dataset.window.level=40", "resume with the dataset options of that run"),  # after it
    ],
)
def test_a_refused_resume_leaves_the_run_dir_as_it_was(
    tiny_overrides: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    conflict: str,
    named: str,
) -> None:
    run_dir = tmp_path / "run"
    run_cli(monkeypatch, *tiny_overrides, f"hydra.run.dir={run_dir}")
    before, log_before = snapshot(run_dir), (run_dir / "train.log").read_text()
    capsys.readouterr()

    with pytest.raises(SystemExit) as exit_info:
        run_cli(monkeypatch, f"hydra.run.dir={run_dir}", "trainer.resume=auto", conflict)
    error = capsys.readouterr().err.splitlines()[-1]  # after the dataset build's progress bar
    assert exit_info.value.code == 2 and error.startswith("liver-gan: error: ") and named in error
    assert snapshot(run_dir) == before
    log_after = (run_dir / "train.log").read_text()
    assert log_after.startswith(log_before) and named in log_after[len(log_before):]


def test_every_error_reaches_the_runs_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        run_cli(monkeypatch, "trainer.epochs=0", "trainer.device=cpu", f"hydra.run.dir={tmp_path}")
    assert capsys.readouterr().err == "liver-gan: error: trainer.epochs=0 must be at least 1\n"
    assert "[ERROR] - error: trainer.epochs=0 must be at least 1" in (tmp_path / "train.log").read_text()


def test_a_changed_learning_rate_is_applied_on_resume_and_logged(
    train_config: Compose, finished_run: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="liver_gan.training.checkpoint"):
        train(train_config("trainer.resume=auto", "trainer.max_steps=3", "optimizer.lr=1e-3"), finished_run)
    last = load_checkpoint(finished_run / "checkpoints" / "last.pt")
    assert last["config"]["optimizer"]["lr"] == 1e-3
    assert [last[name]["param_groups"][0]["lr"] for name in ("optimizer_g", "optimizer_d")] == [1e-3, 1e-3]
    assert "resuming optimizer_g with lr=0.001 from this config (the checkpoint had 0.0002)" in caplog.text


def test_resume_takes_the_optimizer_implementation_of_this_device(train_config: Compose, tmp_path: Path) -> None:
    """A fused checkpoint (as a CUDA run writes) resumed where fused kernels are not wanted."""
    train(train_config("optimizer.implementation=fused"), tmp_path)
    fused = load_checkpoint(tmp_path / "checkpoints" / "last.pt")["optimizer_g"]["param_groups"][0]
    assert fused["fused"] is True
    train(train_config("trainer.resume=auto", "trainer.max_steps=3", "optimizer.implementation=for_loop"), tmp_path)
    group = load_checkpoint(tmp_path / "checkpoints" / "last.pt")["optimizer_g"]["param_groups"][0]
    assert (group["fused"], group["foreach"]) == (None, False)


def test_stale_temporaries_are_removed_at_the_next_start(train_config: Compose, finished_run: Path) -> None:
    stale = [
        finished_run / "checkpoints" / ".last.pt.k1ll3d.tmp",
        finished_run / "samples" / ".step_0000002.png.k1ll3d.tmp",
        finished_run / ".metrics.json.k1ll3d.tmp",
    ]
    for path in stale:
        path.write_bytes(b"half written")
    (finished_run / "checkpoints" / ".epoch_0003.pt.k1ll3d.tmp").mkdir()
    kept = finished_run / "notes.tmp"
    kept.write_text("the user's own file")
    train(train_config("trainer.resume=auto", "trainer.max_steps=3"), finished_run)
    assert not [path for path in finished_run.rglob(".*.tmp")]
    assert kept.read_text() == "the user's own file"


def test_keep_last_n_keeps_the_newest_epoch_checkpoints_besides_last_and_best(
    train_config: Compose, tmp_path: Path
) -> None:
    train(train_config("trainer.max_steps=null", "trainer.epochs=2"), tmp_path)
    checkpoints = tmp_path / "checkpoints"
    shutil.copyfile(checkpoints / "epoch_0001.pt", checkpoints / "best.pt")
    train(
        train_config("trainer.max_steps=null", "trainer.epochs=4", "trainer.resume=auto", "trainer.keep_last_n=1"),
        tmp_path,
    )
    assert sorted(path.name for path in checkpoints.iterdir()) == ["best.pt", "epoch_0004.pt", "last.pt"]
    assert load_checkpoint(checkpoints / "last.pt")["epoch"] == 4
    assert torch.equal(
        load_checkpoint(checkpoints / "last.pt")["generator"]["layers.0.weight"],
        load_checkpoint(checkpoints / "epoch_0004.pt")["generator"]["layers.0.weight"],
    )


def test_a_job_refused_at_its_start_still_records_its_overrides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new run dir has nothing to keep: .hydra/ is written before the checks, so that
    liver-gan-summary lists the job (as failed, from train.log)."""
    with pytest.raises(SystemExit):
        run_cli(monkeypatch, "trainer.epochs=0", "trainer.device=cpu", f"hydra.run.dir={tmp_path}")
    assert yaml.safe_load((tmp_path / ".hydra" / "overrides.yaml").read_text()) == ["trainer.epochs=0", "trainer.device=cpu"]
    assert OmegaConf.load(tmp_path / ".hydra" / "config.yaml").trainer.epochs == 0


def test_a_refused_resume_lists_every_difference(train_config: Compose, finished_run: Path) -> None:
    cfg = train_config("trainer.resume=auto", "model.latent_dim=4", "trainer.batch_size=2")
    with pytest.raises(LiverGanError) as refused:
        train(cfg, finished_run)
    message = str(refused.value)
    assert "model.latent_dim (8 there, 4 here); trainer.batch_size (4 there, 2 here)" in message
    assert message.endswith("resume with the same model.latent_dim, trainer.batch_size")
