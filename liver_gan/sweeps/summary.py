"""Sweep summary: one row per job directory under a directory, best FID first.

A job directory is any directory holding ``.hydra/overrides.yaml`` (every Hydra run and every
job of a multirun has one). Its status is decided as follows:

- ``completed``: ``metrics.json`` exists, its ``status`` is ``"completed"`` (or absent), and
  its FID is a finite number or null (evaluation disabled).
- ``failed``: ``metrics.json`` exists but names another status (``diverged``,
  ``fid_unavailable``, ...), holds a non-finite FID, or cannot be read; or there is no
  ``metrics.json`` and one of the job's ``*.log`` files records an ERROR/CRITICAL message or a
  traceback.
- ``unfinished``: no ``metrics.json`` and no error in the logs: still running, killed, or not
  started yet.

The training loop writes ``metrics.json`` atomically when a run ends, so its presence means the
run ended. Rows are sorted: ``completed`` jobs by FID ascending (jobs without an FID after
them), then ``failed``, then ``unfinished``; no job is ever dropped.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Iterator

import yaml

from liver_gan.atomic import atomic_write_text
from liver_gan.errors import LiverGanError

METRIC_COLUMNS = (
    "fid",
    "fid_floor",
    "fid_over_floor",
    "kid_mean",
    "kid_std",
    "kid_floor",
    "steps",
    "epochs",
    "train_seconds",
    "images_per_second",
)
SUMMARY_CSV = "summary.csv"
SUMMARY_MD = "summary.md"
FORMULA_STARTS = ("=", "+", "-", "@")  # OWASP's CSV injection list, less tab and CR (no override holds them)

# Hydra's job log format is "[time][logger][LEVEL] - message".
_ERROR_RECORD = re.compile(r"\]\[(ERROR|CRITICAL)\] - (?P<message>.*)")
_TRACEBACK = "Traceback (most recent call last)"


class JobStatus(str, Enum):
    completed = "completed"
    failed = "failed"
    unfinished = "unfinished"


@dataclass(frozen=True)
class JobResult:
    name: str  # the job directory relative to the summarised directory
    status: JobStatus
    detail: str  # why a job failed or is unfinished; empty when completed
    overrides: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def fid(self) -> float | None:
        value = self.metrics.get("fid")
        return float(value) if isinstance(value, (int, float)) else None


def find_job_dirs(root: Path) -> list[Path]:
    """Every directory under ``root`` (``root`` included) that holds ``.hydra/overrides.yaml``."""
    return [path.parent.parent for path in root.rglob("overrides.yaml") if path.parent.name == ".hydra"]


def read_overrides(job_dir: Path) -> dict[str, str]:
    """The job's command-line overrides as {key: value}, in the order they were given."""
    path = job_dir / ".hydra" / "overrides.yaml"
    try:
        lines = yaml.safe_load(path.read_text()) or []
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise LiverGanError(f"{path}: cannot read the job's overrides ({reason}); is it a Hydra run dir?") from None
    if not isinstance(lines, list):
        raise LiverGanError(f"{path}: not a list of overrides; is it a Hydra run dir?")
    return dict(str(line).partition("=")[::2] for line in lines)


def first_logged_error(job_dir: Path) -> str | None:
    """The first ERROR/CRITICAL message or traceback in the job's ``*.log`` files, if any."""
    for log_file in sorted(job_dir.glob("*.log")):
        with open(log_file, errors="replace") as lines:
            for line in lines:
                record = _ERROR_RECORD.search(line)
                if record:
                    return f"{log_file.name}: {record.group('message').strip()}"
                if _TRACEBACK in line:
                    return f"{log_file.name}: traceback"
    return None


def judge_metrics(metrics: dict[str, Any]) -> tuple[JobStatus, str]:
    """Status and detail of a job that wrote ``metrics.json``."""
    status = metrics.get("status", JobStatus.completed.value)
    if status != JobStatus.completed.value:
        return JobStatus.failed, str(status)
    fid = metrics.get("fid")
    if fid is not None and not (isinstance(fid, (int, float)) and math.isfinite(fid)):
        return JobStatus.failed, f"fid is {fid}"
    return JobStatus.completed, ""


def read_job(job_dir: Path, root: Path) -> JobResult:
    name = job_dir.relative_to(root).as_posix()
    try:
        overrides = read_overrides(job_dir)
    except LiverGanError as error:  # one damaged job must not hide the others
        return JobResult(name, JobStatus.failed, str(error), {})
    metrics_path = job_dir / "metrics.json"
    if not metrics_path.exists():
        error = first_logged_error(job_dir)
        if error is not None:
            return JobResult(name, JobStatus.failed, error, overrides)
        return JobResult(name, JobStatus.unfinished, "no metrics.json yet", overrides)
    try:
        metrics = json.loads(metrics_path.read_text())
    except (OSError, ValueError) as error:
        return JobResult(name, JobStatus.failed, f"unreadable metrics.json ({error})", overrides)
    if not isinstance(metrics, dict):
        return JobResult(name, JobStatus.failed, "metrics.json is not a JSON object", overrides)
    status, detail = judge_metrics(metrics)
    return JobResult(name, status, detail, overrides, metrics)


def _natural_key(name: str) -> list[Any]:
    """Order job 2 before job 10."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def ranking_key(job: JobResult) -> tuple[int, float, list[Any]]:
    order = list(JobStatus).index(job.status)
    fid = job.fid if job.status is JobStatus.completed and job.fid is not None else math.inf
    return order, fid, _natural_key(job.name)


def collect_jobs(root: Path) -> list[JobResult]:
    """Every job under ``root``, best first (see the module docstring)."""
    root = Path(root)
    if not root.is_dir():
        raise LiverGanError(f"{root}: no such directory; pass a multirun dir such as outputs/multirun/<date>")
    job_dirs = find_job_dirs(root)
    if not job_dirs:
        raise LiverGanError(
            f"{root}: no job directories (with .hydra/overrides.yaml) under it; "
            "pass a multirun dir such as outputs/multirun/<date>"
        )
    return sorted((read_job(job_dir, root) for job_dir in job_dirs), key=ranking_key)


def override_keys(jobs: list[JobResult]) -> list[str]:
    """Every key any job overrides, in first-seen order."""
    return list(dict.fromkeys(key for job in jobs for key in job.overrides))


def split_overrides(jobs: list[JobResult]) -> tuple[list[str], dict[str, str]]:
    """(keys whose value differs between jobs, {key: value} shared by every job)."""
    keys = override_keys(jobs)
    common = {}
    for key in keys:
        values = {job.overrides.get(key) for job in jobs}
        if len(values) == 1 and None not in values:
            common[key] = values.pop()
    return [key for key in keys if key not in common], common


def metric_columns(jobs: list[JobResult]) -> list[str]:
    return [column for column in METRIC_COLUMNS if any(column in job.metrics for job in jobs)]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.5g}"
    return str(value)


def _rows(jobs: list[JobResult], keys: list[str], metrics: list[str]) -> Iterator[list[Any]]:
    for job in jobs:
        yield (
            [job.name, job.status.value]
            + [job.overrides.get(key) for key in keys]
            + [job.metrics.get(column) for column in metrics]
            + [job.detail]
        )


def format_csv(jobs: list[JobResult]) -> str:
    """Every override key and metric as its own column, values unrounded."""
    keys = override_keys(jobs)
    metrics = metric_columns(jobs)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([_inert_cell(cell) for cell in ["job", "status", *keys, *metrics, "detail"]])
    writer.writerows([_inert_cell(cell) for cell in row] for row in _rows(jobs, keys, metrics))
    return buffer.getvalue()


def _inert_cell(cell: Any) -> Any:
    """A text cell a spreadsheet would run as a formula (=, +, -, @) gets a leading quote; numbers stay."""
    if not isinstance(cell, str) or not cell.startswith(FORMULA_STARTS):
        return cell
    try:
        float(cell)
    except ValueError:
        return f"'{cell}"
    return cell


def _markdown_row(cells: list[str]) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


def format_markdown(root: Path, jobs: list[JobResult]) -> str:
    """A title, the counts, the overrides every job shares, then a table of what differs."""
    varying, common = split_overrides(jobs)
    metrics = metric_columns(jobs)
    counts = ", ".join(
        f"{sum(job.status is status for job in jobs)} {status.value}" for status in JobStatus
    )
    lines = [f"# Sweep summary: {root}", "", f"{len(jobs)} jobs: {counts}.", ""]
    if common:
        shared = " ".join(f"`{key}={value}`" for key, value in common.items())
        lines += [f"Every job: {shared}", ""]
    header = ["rank", "job", "status", *varying, *metrics, "detail"]
    lines += [_markdown_row(header), _markdown_row(["---"] * len(header))]
    for rank, row in enumerate(_rows(jobs, varying, metrics), start=1):
        lines.append(_markdown_row([str(rank)] + [_cell(value) for value in row]))
    return "\n".join(lines) + "\n"


def write_summary(root: Path, jobs: list[JobResult]) -> tuple[Path, Path]:
    """Write ``summary.csv`` and ``summary.md`` into ``root``; returns their paths."""
    csv_path, md_path = Path(root) / SUMMARY_CSV, Path(root) / SUMMARY_MD
    atomic_write_text(csv_path, format_csv(jobs))
    atomic_write_text(md_path, format_markdown(root, jobs))
    return csv_path, md_path
