"""Timing and reporting shared by every benchmark: repeats, min/median/max, ratios, tables.

A benchmark returns a :class:`Section`: its figures (one value per repeat), the checks (ratios
against the issue's goals) and notes.  ``report.py`` renders sections as plain text or as the Markdown tables
of BENCHMARKS.md, so the published tables are exactly what the script printed.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

GPU_NOT_MEASURED = "not measured: no GPU in this session"


@dataclass(frozen=True)
class Figure:
    """One measured quantity, one value per repeat, and what bounds it."""

    name: str
    unit: str
    values: tuple[float, ...]
    limit: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def low(self) -> float:
        return min(self.values)

    @property
    def high(self) -> float:
        return max(self.values)


@dataclass(frozen=True)
class Check:
    """A ratio of two medians (or one median) held against the issue's goal, if it has one."""

    label: str
    value: float
    at_least: float | None = None
    at_most: float | None = None

    @property
    def goal(self) -> str:
        if self.at_least is not None:
            return f">= {self.at_least:g}"
        if self.at_most is not None:
            return f"<= {self.at_most:g}"
        return ""

    @property
    def verdict(self) -> str:
        if self.at_least is not None:
            return "met" if self.value >= self.at_least else "MISSED"
        if self.at_most is not None:
            return "met" if self.value <= self.at_most else "MISSED"
        return ""


@dataclass
class Section:
    """One table of results: its figures, the checks against the goals, and notes."""

    title: str
    figures: list[Figure] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    unmeasured: list[tuple[str, str]] = field(default_factory=list)  # (row, why it has no numbers)
    extra_columns: tuple[str, ...] = ()  # e.g. a projected wall time, one cell per figure
    extra_cells: dict[str, tuple[str, ...]] = field(default_factory=dict)  # figure name -> its cells

    def add(self, figure: Figure, *cells: str) -> Figure:
        self.figures.append(figure)
        if cells:
            self.extra_cells[figure.name] = cells
        return figure

    def ratio(self, label: str, numerator: Figure, denominator: Figure, **goal: float) -> Check:
        """``numerator / denominator`` of the medians; ``at_least=``/``at_most=`` give the goal."""
        return self.check(label, numerator.median / denominator.median, **goal)

    def check(self, label: str, value: float, **goal: float) -> Check:
        check = Check(label, value, **goal)
        self.checks.append(check)
        return check


def repeat_seconds(run: Callable[[], object], repeats: int, warmup: int = 1) -> tuple[float, ...]:
    """Wall-clock seconds of ``run()`` per repeat, after ``warmup`` untimed calls.

    Warm-up absorbs one-off costs (allocator growth, oneDNN kernel selection, page cache) that
    a long training run pays once, not per step.
    """
    for _ in range(warmup):
        run()
    measure = seconds_of(run)
    return tuple(measure() for _ in range(repeats))


def announce(what: str) -> None:
    """A progress line on stderr, so a long run shows where it is without touching the results on stdout."""
    print(f"  {what} ...", file=sys.stderr, flush=True)


def seconds_of(run: Callable[[], object]) -> Callable[[], float]:
    """A measurement of one call of ``run``, in wall-clock seconds."""

    def measure() -> float:
        start = clock()
        run()
        return clock() - start

    return measure


def clock() -> float:
    """``time.perf_counter()`` once every GPU has finished its queued work: a GPU runs kernels
    asynchronously, so an unsynchronised clock would time the queueing."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter()


def take_turns(measurements: dict[str, Callable[[], float]], repeats: int) -> dict[str, tuple[float, ...]]:
    """Every measurement ``repeats`` times, taking turns: one of each per round.

    This host's speed drifts by 10-20 % within minutes (other tenants); taking turns exposes every
    measurement to the same drift, so the ratios between them hold while the absolute figures wander.
    """
    values: dict[str, list[float]] = {name: [] for name in measurements}
    for _ in range(repeats):
        for name, measure in measurements.items():
            values[name].append(measure())
    return {name: tuple(measured) for name, measured in values.items()}


def rates(work: float, seconds: Sequence[float]) -> tuple[float, ...]:
    """Units of work per second for each repeat."""
    return tuple(work / s for s in seconds)


def format_duration(seconds: float) -> str:
    """A wall time a person reads at a glance: 47 min, 4.5 h, 12 s."""
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.1f} s"


def format_value(value: float) -> str:
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    if value >= 0.1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (platform.processor() is often empty)."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags() -> str:
    """The vector extensions that decide GEMM speed on this CPU (AVX-512, bf16, AMX)."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    flags = line.split(":", 1)[1].split()
                    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
                    return " ".join(flag for flag in wanted if flag in flags) or "none of avx2/avx512/amx"
    except OSError:
        pass
    return "unknown"


def load_average() -> str:
    """Other work on these cores distorts every figure; the load average says how much there was."""
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def machine_info() -> list[tuple[str, str]]:
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return [
        ("CPU", cpu_model()),
        ("vector extensions", cpu_flags()),
        ("cores (os.cpu_count)", str(os.cpu_count())),
        ("torch", torch.__version__),
        ("torch threads", str(torch.get_num_threads())),
        ("GPU", gpu),
        ("python", platform.python_version()),
        ("load average at the start (1/5/15 min)", load_average()),
    ]
