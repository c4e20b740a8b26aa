"""What a training run tells its user: the config tree at start, progress while it runs, and its
result at the end."""

from __future__ import annotations

import logging
import re
from typing import Callable, Iterator

import pytest
from omegaconf import DictConfig

from liver_gan.cli.config_tree import print_config_tree, wants_config_tree
from liver_gan.progress import DEFAULT_TICK_SECONDS, format_duration, progress, set_tick_seconds


def test_the_config_tree_shows_every_group_and_value(
    compose_config: Callable[..., DictConfig], capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = compose_config(["optimizer.lr=0.00031"], hydra=False)
    print_config_tree(cfg)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "config"
    groups = [line.split()[-1] for line in lines if line.lstrip("│ ").startswith(("├── ", "└── ")) and ":" not in line]
    assert groups == ["dataset", "model", "optimizer", "loss", "eval", "trainer"]
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
