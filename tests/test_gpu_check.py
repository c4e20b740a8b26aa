"""The GPU check (issue 23), proven on the CPU: ``benchmarks/gpu_check.sh --dry-run`` runs every stage
at its smallest size, writes the JSON and the Markdown fragment, and reports a stage that fails
without stopping the others; the GPU presets compose."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Callable

import pytest
import torch
from omegaconf import DictConfig

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.sh"


@pytest.fixture(scope="module")
def gpu_check() -> ModuleType:
    """benchmarks/gpu_check.py, imported as the script runs (benchmarks/ on sys.path)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        return importlib.import_module("gpu_check")
    finally:
        sys.path.remove(str(REPO / "benchmarks"))


@pytest.mark.slow
def test_the_dry_run_completes_every_stage_and_reports_the_failed_one(fid_weights: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": sys.executable, "GPU_CHECK_WEIGHTS": str(fid_weights), "OMP_NUM_THREADS": "1"}
    completed = subprocess.run(
        ["bash", str(SCRIPT), "--dry-run", "--out", str(out), "--fail-stage", "ddpm"],
        cwd=tmp_path, env=env, capture_output=True, text=True,
    )
    assert completed.returncode == 1, completed.stdout[-3000:] + completed.stderr[-3000:]
    results = json.loads((out / "gpu_check.json").read_text())
    stages = {record["stage"]: record for record in results["stages"]}
    assert list(stages) == ["tests", "training", "fid", "ddpm", "thesis", "torchrun", "quality"]
    assert stages["ddpm"]["status"] == "failed"
    assert "deliberately failed (--fail-stage ddpm)" in stages["ddpm"]["error"]
    assert {name: record["status"] for name, record in stages.items() if name != "ddpm"} == dict.fromkeys(
        ["tests", "training", "fid", "thesis", "torchrun", "quality"], "ok"
    ), (out / "gpu_check.log").read_text()[-5000:]
    rows = {(record["stage"], item["row"]): item["value"] for record in results["stages"] for item in record["rows"]}
    assert rows[("tests", "tests passed")] > 0 and rows[("tests", "tests failed")] == 0
    assert rows[("fid", "relative FID difference, cpu vs cpu")] <= 1e-3
    assert rows[("torchrun", "torchrun liver-gan-train, 5 steps")] == 5
    assert rows[("ddpm", "DDIM sampling, 2 steps, 32x32, batch 2")] > 0  # the failing stage ran, then failed
    training = [value for (stage, _), value in rows.items() if stage == "training"]
    assert len(training) == 4 and all(value > 0 for value in training)  # 2 models x fp32, bf16
    assert sorted(path.name for path in (out / "grids").iterdir()) == ["dcgan.png", "ddpm.png", "stylegan2_gpu.png"]
    fragment = (out / "gpu_check.md").read_text()
    assert fragment.startswith("### GPU check: dry run on the CPU")
    assert "| ddpm | failed: RuntimeError: deliberately failed (--fail-stage ddpm) |" in fragment
    assert "| quality | ok |" in fragment


def test_without_a_gpu_the_full_check_refuses_to_start(
    gpu_check: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main(["--out", str(tmp_path)]) == 2
    assert "no GPU visible; on a CPU run benchmarks/gpu_check.sh --dry-run" in capsys.readouterr().err
    assert not (tmp_path / "gpu_check.json").exists()


def test_the_stage_budgets_fit_eight_minutes_on_one_h100(gpu_check: ModuleType) -> None:
    assert gpu_check.SETUP_SECONDS + sum(stage.seconds for stage in gpu_check.STAGES) <= 8 * 60
    assert [stage.name for stage in gpu_check.STAGES] == list(gpu_check.STAGE_FUNCTIONS)


def test_a_stage_that_runs_out_of_time_is_killed_and_recorded(
    gpu_check: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    stage = gpu_check.Stage("tests", 1, 1, "a stage that sleeps")
    args = gpu_check.parse_args(["--dry-run", "--out", str(tmp_path)])
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    real_popen = subprocess.Popen
    monkeypatch.setattr(gpu_check.subprocess, "Popen", lambda command, **kwargs: real_popen(sleeper, **kwargs))
    with open(tmp_path / "log", "w") as log:
        record = gpu_check.run_stage(stage, args, tmp_path, log)
    assert record["status"] == "timed out" and record["error"] == "over its 1 s"
    assert record["seconds"] < 30


def test_the_gpu_presets_compose(compose_config: Callable[..., DictConfig]) -> None:
    trainer = compose_config(["trainer=gpu"], hydra=False).trainer
    assert (trainer.device, trainer.amp) == ("cuda", True)
    cfg = compose_config(["experiment=stylegan2_gpu"], hydra=False)
    assert (cfg.trainer.device, cfg.trainer.amp, cfg.trainer.batch_size) == ("cuda", True, 64)
    assert (cfg.model.channel_base, cfg.model.channel_max) == (32768, 512)
    assert cfg.model._target_ == "liver_gan.models.stylegan2.build_stylegan2"
    assert cfg.loss.gradient_penalty == pytest.approx(0.0002 * 64**2 / 64)
    assert cfg.augment.ops  # DiffAugment, as experiment=stylegan2
