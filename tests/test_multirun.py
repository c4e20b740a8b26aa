"""Sweeps end to end through the real ``liver-gan-train --multirun``: Hydra's basic launcher,
joblib, submitit_local and the Optuna preset (resumed from SQLite), a rerun of one job from its
overrides, and liver-gan-summary on the result.

Each command runs in a subprocess whose working directory is tmp_path, so the config's relative
defaults (dataset.root=outputs/phantom, dataset.cache_dir=outputs/cache,
eval.cache_dir=outputs/cache/reference_stats) all land in tmp_path without appearing in the
jobs' directory names.  The runs are smoke-sized and skip FID (eval.enabled=false): FID at a
few images costs minutes on 2 CPU cores, and what is tested here is the sweep machinery.  A job
without FID returns inf, which Optuna records as a completed trial.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import optuna
import pytest
import torch
import yaml

from liver_gan.cli.summary import main as summary_main
from liver_gan.sweeps.summary import JobStatus, collect_jobs
from liver_gan.training.threads import usable_cores

TRAIN = str(Path(sys.executable).with_name("liver-gan-train"))
TINY = ["debug=smoke", "model=mlp", "eval.enabled=false", "trainer.device=cpu"]
TIMING_METRICS = {"train_seconds", "images_per_second"}
CACHE_BUILD = "dataset cache miss: building"
CACHE_HIT = "dataset cache hit"

pytestmark = pytest.mark.slow


def liver_gan_train(cwd: Path, *overrides: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [TRAIN, *overrides],
        cwd=cwd,
        env={**os.environ, "HYDRA_FULL_ERROR": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result


def job_dirs(sweep_dir: Path) -> List[Path]:
    return sorted(path.parent.parent for path in sweep_dir.glob("*/.hydra/overrides.yaml"))


def read_overrides(job_dir: Path) -> List[str]:
    return yaml.safe_load((job_dir / ".hydra" / "overrides.yaml").read_text())


def read_metrics(job_dir: Path) -> Dict:
    return json.loads((job_dir / "metrics.json").read_text())


def assert_one_dataset_build(workdir: Path, jobs: List[Path]) -> None:
    """One cache entry, built by one job and read back by every other."""
    entries = [path for path in (workdir / "outputs" / "cache").iterdir() if (path / "meta.json").is_file()]
    assert len(entries) == 1
    logs = "".join((job / "train.log").read_text() for job in jobs)
    assert (logs.count(CACHE_BUILD), logs.count(CACHE_HIT)) == (1, len(jobs) - 1)


def assert_completed(jobs: List[Path], count: int) -> None:
    assert len(jobs) == count
    for job in jobs:
        assert read_metrics(job)["status"] == "completed"
        assert (job / "checkpoints" / "last.pt").is_file()


@pytest.fixture(scope="module")
def basic_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A deterministic sweep over the learning rate with Hydra's basic launcher: two sane jobs
    and a third whose absurd rate makes it diverge at once."""
    workdir = tmp_path_factory.mktemp("basic")
    liver_gan_train(
        workdir,
        "--multirun",
        *TINY,
        "trainer.deterministic=true",
        "optimizer.lr=1e-4,2e-4,1e39",
        "hydra.sweep.dir=sweep",
    )
    return workdir


def test_basic_multirun_gives_one_run_dir_per_job_and_builds_the_dataset_once(basic_sweep: Path) -> None:
    jobs = job_dirs(basic_sweep / "sweep")

    assert [job.name.split("_")[0] for job in jobs] == ["0", "1", "2"]
    assert_completed(jobs[:2], 2)
    assert "optimizer.lr=0.0001" in read_overrides(jobs[0]) and "optimizer.lr=0.0002" in read_overrides(jobs[1])
    assert all((job / "tb").is_dir() and (job / "dataset_summary.json").is_file() for job in jobs)
    assert_one_dataset_build(basic_sweep, jobs)


def test_a_diverged_job_scores_inf_and_the_sweep_goes_on(basic_sweep: Path) -> None:
    diverged = job_dirs(basic_sweep / "sweep")[2]

    assert read_metrics(diverged)["status"] == "diverged"
    assert "[ERROR]" in (diverged / "train.log").read_text()


def test_one_job_reruns_alone_from_its_overrides_to_the_same_result(basic_sweep: Path) -> None:
    job = job_dirs(basic_sweep / "sweep")[1]
    rerun = basic_sweep / "rerun"

    liver_gan_train(basic_sweep, *read_overrides(job), "hydra.mode=RUN", f"hydra.run.dir={rerun}")

    original, again = read_metrics(job), read_metrics(rerun)
    assert {k: v for k, v in again.items() if k not in TIMING_METRICS} == {
        k: v for k, v in original.items() if k not in TIMING_METRICS
    }
    weights = torch.load(job / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
    weights_again = torch.load(rerun / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)
    for network in ("generator", "discriminator"):
        for name, tensor in weights[network].items():
            assert torch.equal(tensor, weights_again[network][name]), f"{network}.{name}"


def test_summary_of_a_real_sweep_lists_every_job(basic_sweep: Path, capsys: pytest.CaptureFixture) -> None:
    summary_main([str(basic_sweep / "sweep")])

    jobs = collect_jobs(basic_sweep / "sweep")
    assert [job.status for job in jobs] == [JobStatus.completed] * 2 + [JobStatus.failed]
    assert (jobs[2].name.split("_")[0], jobs[2].detail) == ("2", "diverged")
    assert "optimizer.lr" in capsys.readouterr().out
    assert (basic_sweep / "sweep" / "summary.csv").is_file() and (basic_sweep / "sweep" / "summary.md").is_file()


def test_joblib_runs_two_jobs_in_parallel_and_they_share_one_dataset_build(tmp_path: Path) -> None:
    liver_gan_train(
        tmp_path,
        "--multirun",
        *TINY,
        "seed=0,1",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "hydra.sweep.dir=sweep",
    )

    jobs = job_dirs(tmp_path / "sweep")
    assert_completed(jobs, 2)
    assert_one_dataset_build(tmp_path, jobs)
    # The two jobs split the cores (trainer.num_threads=null) instead of each taking all of them.
    share = max(1, usable_cores() // 2)
    for job in jobs:
        assert f"torch intra-op threads: {share} ({usable_cores()} cores / 2 concurrent job(s))" in (
            job / "train.log"
        ).read_text()


def test_submitit_local_multirun_completes(tmp_path: Path) -> None:
    liver_gan_train(
        tmp_path, "--multirun", *TINY, "seed=0,1", "hydra/launcher=submitit_local", "hydra.sweep.dir=sweep"
    )

    jobs = job_dirs(tmp_path / "sweep")
    assert_completed(jobs, 2)
    assert (tmp_path / "sweep" / ".submitit").is_dir()


def test_the_slurm_launcher_preset_composes_with_user_resources(compose_config) -> None:
    cfg = compose_config(["hydra/launcher=slurm", "hydra.launcher.partition=gpu", "hydra.launcher.timeout_min=720"])

    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.partition, launcher.timeout_min, launcher.gpus_per_node) == ("gpu", 720, 1)
    assert {"cpus_per_task", "mem_gb", "array_parallelism"} <= set(launcher)


def test_optuna_search_reports_the_best_trial_and_resumes_from_sqlite(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    search = ["hparams_search=optuna_fid", *TINY, f"hydra.sweeper.storage={storage}"]

    liver_gan_train(tmp_path, *search, "hydra.sweeper.n_trials=2", "hydra.sweep.dir=first")
    # A resumed study needs a new sampler seed, or it would repeat the first trials' parameters.
    liver_gan_train(
        tmp_path, *search, "hydra.sweeper.n_trials=1", "hydra.sweeper.sampler.seed=1", "hydra.sweep.dir=again"
    )

    assert_completed(job_dirs(tmp_path / "first"), 2)
    results = yaml.safe_load((tmp_path / "first" / "optimization_results.yaml").read_text())
    assert results["best_value"] == float("inf")  # evaluation is off: every trial scores inf
    # model=mlp on the command line fixes that dimension of the preset's search space.
    searched = {"optimizer.lr", "optimizer.d_lr", "optimizer.betas", "trainer.batch_size", "loss"}
    assert set(results["best_params"]) == searched
    study = optuna.load_study(study_name="liver_gan_fid", storage=storage)
    assert [trial.state for trial in study.trials] == [optuna.trial.TrialState.COMPLETE] * 3
    assert study.trials[2].params != study.trials[0].params
    assert (tmp_path / "again" / "optimization_results.yaml").is_file()
