"""What a training run tells its user: the config tree at start, progress while it runs, and its
result at the end."""

from __future__ import annotations

import logging
import math
import re
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import torch
from omegaconf import DictConfig

from liver_gan.cli.config_tree import print_config_tree, wants_config_tree
from liver_gan.progress import DEFAULT_TICK_SECONDS, TrainingTicks, format_duration, progress, set_tick_seconds
from liver_gan.training.loop import train
from liver_gan.metrics.registry import Metric, compute_metrics
from liver_gan.training.outcome import epochs_text, result_lines, steps_text


def test_the_config_tree_shows_every_group_and_value(
    compose_config: Callable[..., DictConfig], capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = compose_config(["optimizer.lr=0.00031"], hydra=False)
    print_config_tree(cfg)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "config"
    groups = [line.split()[-1] for line in lines if line.lstrip("│ ").startswith(("├── ", "└── ")) and ":" not in line]
    assert groups == ["dataset", "model", "optimizer", "loss", "augment", "eval", "trainer"]
    assert any(line.rstrip().endswith("lr: 0.00031") for line in lines)
    assert any(line.rstrip().endswith("seed: 0") for line in lines)


def test_print_config_null_means_only_on_a_terminal() -> None:
    assert wants_config_tree(None) is False  # pytest captures stdout: no terminal
    assert wants_config_tree(True) is True
    assert wants_config_tree(False) is False


@pytest.fixture
def tick_seconds() -> Iterator[Callable[[float], None]]:
    """Set the tick interval for one test; the default is restored after it."""
    yield set_tick_seconds
    set_tick_seconds(DEFAULT_TICK_SECONDS)


def progress_lines(caplog: pytest.LogCaptureFixture, logger: str) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name == logger]


def test_without_a_terminal_a_phase_logs_its_start_ticks_and_end(
    caplog: pytest.LogCaptureFixture, tick_seconds: Callable[[float], None]
) -> None:
    tick_seconds(0)  # a tick at every update
    caplog.set_level(logging.INFO)
    assert list(progress(range(5), "phantom synthesis", 5, "volumes")) == [0, 1, 2, 3, 4]
    lines = progress_lines(caplog, "liver_gan.progress")
    assert lines[0] == "phantom synthesis: 5 volumes to go"
    tick = re.compile(r"^phantom synthesis: (\d)/5 \(\d+%\)  [\d.e+]+ volumes/s  elapsed \d+s  ETA (\d+s|\d+m\d\ds|\?)$")
    assert [int(tick.match(line).group(1)) for line in lines[1:-1]] == [1, 2, 3, 4]
    assert re.fullmatch(r"phantom synthesis: 5 volumes in \d+s", lines[-1])


def test_a_long_interval_leaves_only_the_start_and_end_lines(
    caplog: pytest.LogCaptureFixture, tick_seconds: Callable[[float], None]
) -> None:
    tick_seconds(3600)
    caplog.set_level(logging.INFO)
    list(progress(range(5), "slicing volumes", 5, "volumes"))
    lines = progress_lines(caplog, "liver_gan.progress")
    assert len(lines) == 2 and lines[0].endswith("to go") and " in " in lines[1]


@pytest.mark.parametrize(("seconds", "text"), [(0, "0s"), (59.4, "59s"), (61, "1m01s"), (3600 * 2 + 7 * 60, "2h07m")])
def test_durations_read_as_hours_minutes_seconds(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


TRAINER = [
    "trainer.device=cpu",
    "trainer.batch_size=4",
    "trainer.epochs=2",
    "trainer.max_steps=null",
    "trainer.log_every=50",
    "trainer.sample_every=1",
    "trainer.checkpoint_every=1",
    "trainer.num_fixed_samples=8",
    "eval.enabled=false",
]
TICK = re.compile(
    r"^tick (\d+)  step (\d+)/(\d+)  epoch (\d+)/(\d+)  kimg [\d.]+  [\d.]+ img/s  elapsed \S+  ETA \S+  "
    r"peak RSS [\d.]+ GiB  loss/D -?[\d.]+  loss/G -?[\d.]+  D\(x\) [\d.]+  D\(G\(z\)\) [\d.]+$"
)


def tick_lines(caplog: pytest.LogCaptureFixture) -> list[re.Match[str]]:
    lines = progress_lines(caplog, "liver_gan.progress")
    ticks = [TICK.match(line) for line in lines if line.startswith("tick ")]
    assert all(ticks), lines
    return ticks


@pytest.fixture
def run_training(
    compose_config: Callable[..., DictConfig], tiny_phantom: list[str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> Callable[..., dict[str, Any]]:
    """Train the tiny MLP on the tiny phantom in tmp_path/run with these overrides, capturing the log."""

    def run(*overrides: str) -> dict[str, Any]:
        caplog.set_level(logging.INFO)
        return train(compose_config([*tiny_phantom, *TRAINER, *overrides], hydra=False), tmp_path / "run")

    return run


def test_a_zero_tick_interval_gives_a_tick_line_every_step(
    run_training: Callable[..., dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    metrics = run_training("trainer.tick_seconds=0")
    ticks = tick_lines(caplog)
    steps = metrics["steps"]
    assert [int(tick.group(2)) for tick in ticks] == list(range(1, steps + 1))
    assert [int(tick.group(1)) for tick in ticks] == list(range(1, steps + 1))
    assert {(int(tick.group(3)), int(tick.group(5))) for tick in ticks} == {(steps, 2)}
    assert int(ticks[-1].group(4)) == 2
    # No per-epoch lines: the ticks replace them.
    assert not [line for line in progress_lines(caplog, "liver_gan.training.loop") if line.startswith("epoch ")]


def test_a_long_interval_ticks_after_the_first_and_the_last_step_only_and_states_the_real_total(
    run_training: Callable[..., dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    """trainer.max_steps=3 stops in epoch 1 of 20: the lines say 3 steps and 1 epoch, not 20 epochs."""
    run_training("trainer.tick_seconds=3600", "trainer.epochs=20", "trainer.max_steps=3")
    ticks = tick_lines(caplog)
    assert [(tick.group(2), tick.group(3), tick.group(4), tick.group(5)) for tick in ticks] == [
        ("1", "3", "1", "1"),
        ("3", "3", "1", "1"),
    ]


def test_a_time_budget_shortens_the_tick_lines_eta(caplog: pytest.LogCaptureFixture) -> None:
    """trainer.max_minutes=1.5 with a step count that would take hours: the ETA is the budget's."""
    caplog.set_level(logging.INFO)
    etas = []
    for seconds_left in (90.0, math.inf):
        ticks = TrainingTicks(10**9, 0, 100, torch.device("cpu"), show=False, seconds_left=seconds_left)
        time.sleep(0.01)
        ticks.advance(4)
        ticks.tick(1, 0.0, {})
        etas.append(re.search(r"ETA (\S+)", caplog.records[-1].getMessage()).group(1))
    assert etas[0] in ("1m29s", "1m30s")
    assert re.fullmatch(r"\d+h\d\dm", etas[1])  # 10**9 steps at this pace: thousands of hours


def test_the_run_ends_with_its_result_and_where_to_look(
    run_training: Callable[..., dict[str, Any]], caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    metrics = run_training()
    lines = progress_lines(caplog, "liver_gan.training.outcome")
    run_dir = tmp_path / "run"
    last_grid = run_dir / "samples" / f"epoch_{metrics['epochs']:04d}.png"
    assert lines[-5:] == [
        f"result: completed after {metrics['steps']} steps (2 epochs, {format_duration(metrics['train_seconds'])} of training)",
        "  no evaluation (eval.enabled=false)",
        f"run dir: {run_dir}",
        f"TensorBoard: tensorboard --logdir {run_dir / 'tb'}",
        f"last samples: {last_grid}",
    ]
    assert last_grid.is_file()


def test_the_result_table_shows_the_headline_metrics_and_the_memorisation_verdict(tmp_path: Path) -> None:
    metrics = {
        "status": "completed", "steps": 600, "epochs": 200, "train_seconds": 130.2, "num_real": 161, "num_fake": 322,
        "real_pool": "train", "fid": 123.456, "kid_mean": 0.0421, "kid_std": 0.0033, "precision": 0.5, "recall": 0.25,
        "memorisation_pixel_fraction_closer_than_val": 0.066, "memorisation_feature_fraction_closer_than_val": 0.0,
        "memorisation_feature_copy_z": 4.2, "memorisation_feature_closer_than_val_p": 1.0,
        "memorisation_copying": False, "memorisation_closest_pairs": "memorisation_closest_pairs.png",
    }
    lines = result_lines(metrics, tmp_path, None, steps_per_epoch=3)
    assert lines[:8] == [
        "result: completed after 600 steps (200 epochs, 2m10s of training)",
        "  FID        123.5",
        "  KID        0.0421 ± 0.0033",
        "  precision  0.5",
        "  recall     0.25",
        "  memorised  no evidence of copying (Inception features: Z_U +4.20, copying below -3; "
        "0.0% of fakes nearer a training slice than any validation slice, chance p 1)",
        "             pixel detail: 6.6% nearer a training slice than any validation slice "
        "(pixel distance favours blur, not a verdict)",
        "  measured on 322 generated and 161 real slices (train pool)",
    ]
    metrics |= {"memorisation_copying": True, "memorisation_feature_copy_z": -5.6}
    assert result_lines(metrics, tmp_path, None, 3)[5].startswith(
        "  memorised  YES, copies likely: look at memorisation_closest_pairs.png (Inception features: Z_U -5.60"
    )
    assert lines[-1] == "last samples: none written"


@pytest.mark.parametrize(
    ("steps", "steps_per_epoch", "text"),
    [(10, 25, "0.4 epochs"), (2, 2, "1 epoch"), (5, 2, "2.5 epochs"), (2, 3, "0.66 epochs"), (0, 4, "0 epochs"),
     (600, 3, "200 epochs")],
)
def test_epochs_read_with_their_fraction_and_one_epoch_is_singular(steps: int, steps_per_epoch: int, text: str) -> None:
    assert epochs_text(steps, steps_per_epoch) == text


def test_one_step_is_singular(tmp_path: Path) -> None:
    """debug=smoke on its phantom announced "5 epochs of 1 steps"."""
    assert [steps_text(1), steps_text(5)] == ["1 step", "5 steps"]
    metrics = {"status": "completed", "steps": 1, "train_seconds": 1.0}
    assert result_lines(metrics, tmp_path, None, steps_per_epoch=1)[0] == "result: completed after 1 step (1 epoch, 1s of training)"


def test_a_run_stopped_mid_epoch_states_the_same_fraction_when_it_starts_and_ends(
    run_training: Callable[..., dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 26: "3 epochs of 2 steps" announced, then "5 steps (2 epochs)" reported."""
    metrics = run_training("trainer.tick_seconds=3600", "trainer.epochs=20", "trainer.max_steps=3")
    (plan,) = [line for line in progress_lines(caplog, "liver_gan.training.loop") if line.startswith("training ")]
    steps_per_epoch = int(re.search(r"of (\d+) steps\)$", plan).group(1))
    assert steps_per_epoch > 3  # the tiny phantom's epoch is longer than the run
    epochs = epochs_text(3, steps_per_epoch)
    assert re.match(r"0\.\d+ epochs$", epochs)
    assert plan.endswith(f": 3 steps ({epochs} of {steps_per_epoch} steps)")
    (result,) = [line for line in progress_lines(caplog, "liver_gan.training.outcome") if line.startswith("result: ")]
    assert result.startswith(f"result: completed after {metrics['steps']} steps ({epochs}, ")


def test_the_metrics_phase_gives_each_metrics_time_and_no_eta_from_the_first(
    caplog: pytest.LogCaptureFixture, tick_seconds: Callable[[float], None]
) -> None:
    """Issue 26: an ETA of 10m27s from the first (Inception-paying) metric, for a phase that took 31 s."""
    tick_seconds(0)
    caplog.set_level(logging.INFO)

    def slow(context: object) -> dict:
        time.sleep(0.3)
        return {"slow": 1.0}

    metrics = [Metric("slow", slow, ("slow",), False), Metric("fast", lambda context: {"fast": 2.0}, ("fast",), False)]
    assert compute_metrics(metrics, context=None) == {"slow": 1.0, "fast": 2.0}
    phase = progress_lines(caplog, "liver_gan.progress")
    assert phase[0] == "metrics: 2 metrics to go" and len(phase) == 3
    assert "ETA" not in phase[1] and re.fullmatch(r"1/2 \(50%\)  \S+ metrics/s  elapsed \d+s", phase[1].split(": ", 1)[1])
    timings = progress_lines(caplog, "liver_gan.metrics.registry")
    assert timings[0] == "computing slow (1/2)" and timings[2] == "computing fast (2/2)"
    assert re.fullmatch(r"slow: done in \d+s", timings[1]) and re.fullmatch(r"fast: done in \d+s", timings[3])


@pytest.mark.slow
def test_debug_smoke_runs_the_steps_it_states(compose_config: Callable[..., DictConfig], tmp_path: Path) -> None:
    cfg = compose_config(
        [
            "debug=smoke",
            "trainer.device=cpu",
            "eval.enabled=false",
            f"dataset.root={tmp_path / 'phantom'}",
            f"dataset.cache_dir={tmp_path / 'cache'}",
        ],
        hydra=False,
    )
    metrics = train(cfg, tmp_path / "run")
    assert cfg.trainer.max_steps == 5
    assert metrics["steps"] == cfg.trainer.max_steps
