"""FID during training (issue 14): ``eval.every_kimg`` appends a snapshot FID to metrics.jsonl, logs
``metrics/fid`` to TensorBoard and keeps checkpoints/best.pt at the lowest; a resumed run keeps
only the snapshots its checkpoint reached and continues them exactly."""

from __future__ import annotations

import dataclasses
import itertools
import json
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import torch
from omegaconf import DictConfig
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from test_fid import PooledPixels
from tiny_gan import tiny_phantom_overrides

from liver_gan.errors import LiverGanError
from liver_gan.metrics import registry
from liver_gan.metrics.inception import FeatureExtractor
from liver_gan.training import snapshots
from liver_gan.training.checkpoint import load_checkpoint
from liver_gan.training.loop import train

Compose = Callable[..., DictConfig]
# Batches of 4 from at least 16 training slices: a snapshot every 4 images is one after each of the
# first 4 steps (the last batch of an epoch may hold fewer images and cross no multiple).
TRAINER = [
    "trainer.device=cpu",
    "trainer.batch_size=4",
    "trainer.epochs=3",
    "trainer.max_steps=4",
    "trainer.log_every=2",
    "trainer.checkpoint_every=1",
    "trainer.num_fixed_samples=4",
    "eval.enabled=false",
    "eval.every_kimg=0.004",
    "eval.snapshot_samples=8",
    "eval.max_real=8",
]


@pytest.fixture
def train_config(compose_config: Compose, data_dir: Path) -> Compose:
    base = [*tiny_phantom_overrides(data_dir), f"eval.cache_dir={data_dir / 'reference'}", *TRAINER]
    return lambda *overrides: compose_config([*base, *overrides], hydra=False)


def snapshot_lines(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def logged_fid(run_dir: Path) -> list[tuple[int, float]]:
    events = EventAccumulator(str(run_dir / "tb" / run_dir.name), size_guidance={"scalars": 0}).Reload()
    return [(event.step, event.value) for event in events.Scalars("metrics/fid")]


@pytest.fixture
def scripted_fid(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Snapshot FIDs 3, 1, 2, 4 in turn; records what each snapshot evaluated with."""
    calls: list[dict[str, Any]] = []
    fids = iter([3.0, 1.0, 2.0, 4.0])

    def evaluate(generator: torch.nn.Module, dataset: Any, options: DictConfig, *args: Any) -> dict[str, Any]:
        calls.append({"generator": generator, "metrics": list(options.metrics), "num_samples": options.num_samples})
        return {"metrics": ["fid"], "fid": next(fids), "num_real": 8, "num_fake": options.num_samples}

    monkeypatch.setattr(snapshots, "evaluate_generator", evaluate)
    return calls


def test_best_pt_follows_the_lowest_snapshot_fid(
    train_config: Compose, tmp_path: Path, scripted_fid: list[dict[str, Any]]
) -> None:
    metrics = train(train_config("trainer.ema_kimg=0.01"), tmp_path)
    lines = snapshot_lines(tmp_path)
    assert [(line["step"], line["kimg"], line["fid"]) for line in lines] == [
        (1, 0.004, 3.0), (2, 0.008, 1.0), (3, 0.012, 2.0), (4, 0.016, 4.0)
    ]
    assert logged_fid(tmp_path) == [(1, 3.0), (2, 1.0), (3, 2.0), (4, 4.0)]
    best = load_checkpoint(tmp_path / "checkpoints" / "best.pt")
    assert (best["step"], best["best_fid"]) == (2, 1.0)
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["best_fid"] == 1.0
    # Snapshots measure FID alone, on eval.snapshot_samples images, of the EMA copy.
    assert all(call["metrics"] == ["fid"] and call["num_samples"] == 8 for call in scripted_fid)
    assert all(not call["generator"].training for call in scripted_fid)
    assert "fid" not in metrics or metrics["fid"] is None  # eval.enabled=false: no final evaluation


@pytest.fixture
def weight_fid(monkeypatch: pytest.MonkeyPatch) -> None:
    """A snapshot 'FID' that is a function of the evaluated weights alone: equal runs, equal FIDs."""

    def evaluate(generator: torch.nn.Module, dataset: Any, options: DictConfig, *args: Any) -> dict[str, Any]:
        weight = next(generator.parameters())
        return {"metrics": ["fid"], "fid": weight.double().abs().sum().item(), "num_real": 8, "num_fake": 8}

    monkeypatch.setattr(snapshots, "evaluate_generator", evaluate)


@pytest.fixture
def deterministic() -> Iterator[None]:
    yield
    torch.use_deterministic_algorithms(False)


@pytest.mark.usefixtures("weight_fid", "deterministic")
def test_a_resumed_run_keeps_only_the_snapshots_its_checkpoint_reached(train_config: Compose, tmp_path: Path) -> None:
    exact = ["trainer.deterministic=true", "trainer.resume=auto"]
    train(train_config(*exact), tmp_path / "uninterrupted")
    capped = tmp_path / "capped"
    train(train_config(*exact, "trainer.max_steps=2"), capped)
    # A snapshot written after the checkpoint (the run was killed between the two) is dropped on resume.
    with (capped / "metrics.jsonl").open("a") as log_file:
        log_file.write(json.dumps({"step": 3, "kimg": 0.012, "fid": -1.0}) + "\n")
    time.sleep(1.1)  # TensorBoard names event files by the second
    train(train_config(*exact), capped)

    assert snapshot_lines(capped) == snapshot_lines(tmp_path / "uninterrupted")
    assert [line["step"] for line in snapshot_lines(capped)] == [1, 2, 3, 4]
    assert logged_fid(capped) == logged_fid(tmp_path / "uninterrupted")
    best, reference = (load_checkpoint(run / "checkpoints" / "best.pt") for run in (capped, tmp_path / "uninterrupted"))
    assert best["step"] == reference["step"] and best["best_fid"] == reference["best_fid"]


def test_a_real_snapshot_measures_fid_and_the_final_evaluation_is_unchanged(
    train_config: Compose, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    extractor = FeatureExtractor(PooledPixels(), "pooled.pth", "0" * 64, torch.device("cpu"))
    monkeypatch.setattr("liver_gan.metrics.evaluate.load_feature_extractor", lambda weights, device: extractor)
    for name, metric in list(registry._METRICS.items()):
        if name not in ("fid", "kid"):
            monkeypatch.setitem(registry._METRICS, name, dataclasses.replace(metric, compute=None))
    final = ["eval.enabled=true", "eval.metrics=[fid,kid]", "eval.num_samples=12", "eval.kid.num_subsets=2",
             "eval.kid.subset_size=4", "eval.every_kimg=0.008"]
    metrics = train(train_config(*final), tmp_path)
    lines = snapshot_lines(tmp_path)
    assert [line["step"] for line in lines] == [2, 4]
    assert all(line["fid"] > 0 and line["num_fake"] == 8 and "kid_mean" not in line for line in lines)
    assert metrics["num_fake"] == 12 and metrics["kid_mean"] is not None
    assert not (tmp_path / "fid_images").exists()


@pytest.mark.parametrize("option", ["eval.every_kimg=0", "eval.snapshot_samples=1"])
def test_bad_snapshot_options_fail_in_one_line(train_config: Compose, tmp_path: Path, option: str) -> None:
    with pytest.raises(LiverGanError, match=option.split("=")[0]) as refused:
        train(train_config(option), tmp_path)
    assert "\n" not in str(refused.value)


def test_snapshots_are_due_each_time_the_images_seen_cross_a_multiple() -> None:
    seen = [0, 3, 6, 9, 12, 15, 18]
    due = [snapshots.snapshot_due(before, after, 0.005) for before, after in itertools.pairwise(seen)]
    assert due == [False, True, False, True, True, False]  # 5, 10 and 15 images
    assert not snapshots.snapshot_due(0, 10**6, None)
