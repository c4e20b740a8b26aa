"""trainer.num_threads: torch's intra-op threads, a fair share of the cores when runs share them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tiny_gan import tiny_phantom_overrides

from liver_gan.errors import LiverGanError
from liver_gan.training.loop import train
from liver_gan.training.threads import apply_num_threads, choose_num_threads, concurrent_jobs, usable_cores


@pytest.fixture()
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_the_cores_are_divided_by_the_jobs_that_run_at_once() -> None:
    assert choose_num_threads(None, cores=16, jobs=4) == 4
    assert choose_num_threads(None, cores=2, jobs=5) == 1  # never zero threads
    assert choose_num_threads(3, cores=16, jobs=4) == 3  # the user's count wins


def test_a_non_positive_count_is_refused_naming_the_option() -> None:
    with pytest.raises(LiverGanError, match="trainer.num_threads=0"):
        choose_num_threads(0, cores=2, jobs=1)


def test_torchrun_local_ranks_count_as_concurrent_jobs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert concurrent_jobs(cores=16) == 4
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    assert concurrent_jobs(cores=16) == 1


def test_the_chosen_count_is_applied_to_torch(restore_threads, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO")
    torch.set_num_threads(usable_cores())
    assert apply_num_threads(1) == 1
    assert torch.get_num_threads() == 1
    assert "torch intra-op threads: 1 (trainer.num_threads)" in caplog.text


def test_a_run_sets_the_threads_it_was_given(restore_threads, compose_config, tmp_path: Path) -> None:
    cfg = compose_config(
        [*tiny_phantom_overrides(tmp_path), "trainer.device=cpu", "trainer.max_steps=1", "eval.enabled=false",
         "trainer.num_threads=1"],
        hydra=False,
    )
    torch.set_num_threads(usable_cores())
    train(cfg, tmp_path / "run")
    assert torch.get_num_threads() == 1


def test_a_bad_count_is_refused_before_the_run_dir_is_made(compose_config, tmp_path: Path) -> None:
    cfg = compose_config([*tiny_phantom_overrides(tmp_path), "trainer.num_threads=-2"], hydra=False)
    with pytest.raises(LiverGanError, match="trainer.num_threads=-2"):
        train(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()
