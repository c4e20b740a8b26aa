"""liver-gan-summary on fabricated job directories: ranking by FID, failed and unfinished jobs."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Dict, List, Optional

import pytest
import yaml

from liver_gan.cli.summary import main as summary_main
from liver_gan.sweeps.summary import JobStatus, collect_jobs, split_overrides

HYDRA_ERROR_LINE = "[2024-05-01 12:00:00,000][liver_gan.training.loop][ERROR] - loss/D is nan at step 7\n"


def make_job(
    root: Path,
    name: str,
    overrides: List[str],
    metrics: Optional[Dict] = None,
    log: str = "[2024-05-01 12:00:00,000][liver_gan.training.loop][INFO] - epoch 1/1\n",
) -> Path:
    job = root / name
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (job / "train.log").write_text(log)
    if metrics is not None:
        (job / "metrics.json").write_text(json.dumps(metrics))
    return job


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """Seven jobs of a sweep over optimizer.lr, in every state a job can end up in."""
    root = tmp_path / "multirun"
    common = ["debug=smoke"]
    make_job(root, "0_lr=a", common + ["optimizer.lr=a"], {"status": "completed", "fid": 50.0, "steps": 5})
    make_job(root, "1_lr=b", common + ["optimizer.lr=b"], {"status": "completed", "fid": 20.0, "steps": 5})
    make_job(root, "2_lr=c", common + ["optimizer.lr=c"], {"status": "diverged", "fid": None, "steps": 3})
    make_job(root, "3_lr=d", common + ["optimizer.lr=d"], log=HYDRA_ERROR_LINE)
    make_job(root, "4_lr=e", common + ["optimizer.lr=e"])
    make_job(root, "5_lr=f", common + ["optimizer.lr=f"], {"status": "completed", "fid": None, "steps": 5})
    make_job(root, "10_lr=g", common + ["optimizer.lr=g"], {"status": "completed", "fid": 30.0, "steps": 5})
    return root


def test_jobs_are_ranked_by_fid_with_failed_and_unfinished_last(sweep: Path) -> None:
    jobs = collect_jobs(sweep)

    assert [job.name for job in jobs] == ["1_lr=b", "10_lr=g", "0_lr=a", "5_lr=f", "2_lr=c", "3_lr=d", "4_lr=e"]
    assert [job.status for job in jobs] == [JobStatus.completed] * 4 + [JobStatus.failed] * 2 + [JobStatus.unfinished]
    assert jobs[4].detail == "diverged"
    assert "loss/D is nan at step 7" in jobs[5].detail


def test_a_non_finite_fid_or_a_traceback_counts_as_failed(tmp_path: Path) -> None:
    make_job(tmp_path, "0", ["seed=0"], {"status": "completed", "fid": float("inf")})
    make_job(tmp_path, "1", ["seed=1"], log="Traceback (most recent call last):\n  File ...\n")
    make_job(tmp_path, "2", ["seed=2"], {"status": "fid_unavailable", "fid": None})

    jobs = collect_jobs(tmp_path)

    assert [job.status for job in jobs] == [JobStatus.failed] * 3
    assert [job.detail for job in jobs] == ["fid is inf", "train.log: traceback", "fid_unavailable"]


def test_a_single_run_directory_is_its_own_job(tmp_path: Path) -> None:
    make_job(tmp_path, ".", ["model=mlp"], {"status": "completed", "fid": 12.5})

    (job,) = collect_jobs(tmp_path)

    assert (job.name, job.status, job.fid) == (".", JobStatus.completed, 12.5)


def test_overrides_split_into_varying_columns_and_shared_values(sweep: Path) -> None:
    varying, common = split_overrides(collect_jobs(sweep))

    assert varying == ["optimizer.lr"]
    assert common == {"debug": "smoke"}


def test_cli_prints_the_table_and_writes_csv_and_markdown(sweep: Path, capsys: pytest.CaptureFixture) -> None:
    summary_main([str(sweep)])

    printed = capsys.readouterr().out
    with open(sweep / "summary.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["job"] for row in rows][:3] == ["1_lr=b", "10_lr=g", "0_lr=a"]
    assert [row["status"] for row in rows].count("failed") == 2
    assert rows[0]["optimizer.lr"] == "b" and rows[0]["debug"] == "smoke" and rows[0]["fid"] == "20.0"
    markdown = (sweep / "summary.md").read_text()
    assert markdown in printed
    assert "7 jobs: 4 completed, 2 failed, 1 unfinished." in markdown
    assert "| 1 | 1_lr=b | completed | b | 20 | 5 |  |" in markdown
    assert "| 5 | 2_lr=c | failed | c |  | 3 | diverged |" in markdown
    assert "| 7 | 4_lr=e | unfinished | e |  |  | no metrics.json yet |" in markdown


@pytest.mark.parametrize("make_dir", [lambda tmp: tmp / "missing", lambda tmp: tmp])
def test_cli_rejects_a_directory_without_jobs_in_one_line(
    tmp_path: Path, make_dir, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        summary_main([str(make_dir(tmp_path))])

    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("liver-gan: error: ") and "multirun" in error


def test_an_unreadable_overrides_file_names_the_file(tmp_path: Path) -> None:
    job = make_job(tmp_path, "0", ["seed=0"])
    (job / ".hydra" / "overrides.yaml").write_text("- [unclosed\n")

    (listed,) = collect_jobs(tmp_path)  # the job is listed as failed (issue 24), the others still are
    assert listed.status.value == "failed" and "overrides.yaml" in listed.detail
