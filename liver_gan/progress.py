"""Progress of every phase that takes more than a few seconds: phantom synthesis, the dataset build,
training, each Inception pass.

On a terminal a phase shows a tqdm bar with its rate and ETA.  Without one (output redirected to a
file, a pipe, a batch job) a bar would be one endless line of carriage returns, so the phase logs a
line instead when it starts, every ``tick_seconds`` and when it ends, as stylegan2-ada's ticks do::

    Inception: 2048 generated slices: 640/2048 (31%)  12.1 images/s  elapsed 53s  ETA 1m56s

Training (:class:`TrainingTicks`) shows a bar on a terminal and, on a terminal or not, a tick line
after the first step, every ``tick_seconds`` and at the last step; the lines also go to ``train.log``::

    tick 3  step 120/600  epoch 40/200  kimg 7.7  27.1 img/s  elapsed 1m05s  ETA 4m20s  peak RSS 1.20 GiB  loss/D 0.412 ...

The interval is :data:`TICK_SECONDS`, set for a whole run by :func:`tick_seconds` (liver-gan-train
takes it from ``trainer.tick_seconds``).  The data and metric phases run without torch, so this
module imports it only where a training device is already at hand.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import resource
import sys
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, TypeVar

from tqdm import tqdm

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

Item = TypeVar("Item")

DEFAULT_TICK_SECONDS = 30.0
TICK_SECONDS = DEFAULT_TICK_SECONDS


def set_tick_seconds(seconds: float) -> None:
    """The interval of the timed lines of every phase from now on (0: a line per update)."""
    global TICK_SECONDS
    TICK_SECONDS = seconds


@contextlib.contextmanager
def tick_seconds(seconds: float) -> Iterator[None]:
    """:func:`set_tick_seconds` for the phases inside; the previous interval is restored after."""
    previous = TICK_SECONDS
    set_tick_seconds(seconds)
    try:
        yield
    finally:
        set_tick_seconds(previous)


def on_terminal() -> bool:
    """Whether progress bars can redraw in place: tqdm draws on stderr."""
    return sys.stderr.isatty()


def format_duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``2h07m``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


class PhaseProgress:
    """``total`` units of work called ``description``: a bar on a terminal, else timed log lines.

    ``initial`` units are already done (a resumed run); rates and the ETA count only this session's.
    ``eta=False`` for units of unequal cost (the metrics of an evaluation: the first pays for the
    Inception passes the others reuse), where the pace of the first would mislead: no ETA is shown.
    """

    def __init__(self, description: str, total: int, unit: str, initial: int = 0, eta: bool = True) -> None:
        self.description = description
        self.total = total
        self.unit = unit
        self.done = initial
        self.initial = initial
        self.eta = eta
        self.start = self.last_tick = time.perf_counter()
        self.ticking = not on_terminal()
        bar_format = None if eta else "{desc}: {n_fmt}/{total_fmt} {unit} [{elapsed}]"
        self.bar = tqdm(
            total=total,
            initial=initial,
            desc=description,
            unit=unit,
            dynamic_ncols=True,
            disable=self.ticking,
            bar_format=bar_format,
        )
        if self.ticking:
            log.info("%s: %d %s to go", description, total - initial, unit)

    def update(self, count: int = 1) -> None:
        self.done += count
        self.bar.update(count)
        if self.ticking and self.done < self.total and self.tick_due():
            self.log_tick()

    def tick_due(self) -> bool:
        return time.perf_counter() - self.last_tick >= TICK_SECONDS

    def log_tick(self) -> None:
        self.last_tick = time.perf_counter()
        log.info("%s: %s", self.description, self.status())

    def status(self) -> str:
        """``640/2048 (31%)  12.1 images/s  elapsed 53s  ETA 1m56s`` (no ETA with ``eta=False``)."""
        elapsed = time.perf_counter() - self.start
        rate = (self.done - self.initial) / elapsed if elapsed > 0 else 0.0
        eta = format_duration((self.total - self.done) / rate) if rate > 0 else "?"
        share = self.done / self.total if self.total else 1.0
        status = f"{self.done}/{self.total} ({share:.0%})  {rate:.3g} {self.unit}/s  elapsed {format_duration(elapsed)}"
        return f"{status}  ETA {eta}" if self.eta else status

    def close(self) -> None:
        self.bar.close()
        if self.ticking:
            elapsed = time.perf_counter() - self.start
            log.info("%s: %d %s in %s", self.description, self.done - self.initial, self.unit, format_duration(elapsed))

    def __enter__(self) -> "PhaseProgress":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def progress(items: Iterable[Item], description: str, total: int, unit: str) -> Iterator[Item]:
    """``items`` with a :class:`PhaseProgress` of ``total`` units, one per item."""
    with PhaseProgress(description, total, unit) as shown:
        for item in items:
            yield item
            shown.update()


def peak_memory(device: torch.device) -> str:
    """The most memory the run has held: CUDA memory allocated on a GPU, the process's resident set on the CPU."""
    if device.type == "cuda":
        import torch.cuda  # only here: a GPU run has torch loaded, and the phases without one stay torch-free

        return f"peak GPU {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB"
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    bytes_per_unit = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is in KiB on Linux
    return f"peak RSS {peak * bytes_per_unit / 2**30:.2f} GiB"


class TrainingTicks:
    """The bar and the tick lines of one training session, from ``first_step`` to ``total_steps`` or
    until ``seconds_left`` (what ``trainer.max_minutes`` leaves of the budget) have passed."""

    def __init__(
        self,
        total_steps: int,
        first_step: int,
        steps_per_epoch: int,
        device: torch.device,
        show: bool = True,
        seconds_left: float = math.inf,
    ) -> None:
        from liver_gan.device import device_clock  # only here: liver_gan.device loads torch

        self.total_steps = total_steps
        self.first_step = first_step
        self.seconds_left = seconds_left
        self.steps_per_epoch = steps_per_epoch
        self.device = device
        self.clock = functools.partial(device_clock, device)
        self.count = 0
        self.images = 0
        self.start = self.clock()
        self.last_tick: float | None = None
        # disable=None: a bar on a terminal only; show=False (the ranks but 0 of a run of several): never.
        self.bar = tqdm(
            total=total_steps, initial=first_step, unit="step", dynamic_ncols=True, disable=None if show else True
        )

    def advance(self, images: int) -> None:
        """One step of ``images`` images done."""
        self.images += images
        self.bar.update()

    def due(self, step: int) -> bool:
        """After the first step, every ``tick_seconds`` and at the last step."""
        if self.last_tick is None or step == self.total_steps:
            return True
        return time.perf_counter() - self.last_tick >= TICK_SECONDS

    def tick(self, step: int, kimg: float, means: Mapping[str, float]) -> None:
        """Log the tick line for ``step``, with the loss means since the last tick."""
        now = self.clock()
        self.last_tick = now
        self.count += 1
        elapsed = now - self.start
        steps_done = step - self.first_step
        eta_seconds = (self.total_steps - step) * elapsed / steps_done if steps_done else math.inf
        eta_seconds = min(eta_seconds, max(self.seconds_left - elapsed, 0.0))  # the time budget ends it first
        eta = "?" if math.isinf(eta_seconds) else format_duration(eta_seconds)
        total_epochs = math.ceil(self.total_steps / self.steps_per_epoch)
        epoch = min(math.ceil(step / self.steps_per_epoch), total_epochs)
        fields = [
            f"tick {self.count}",
            f"step {step}/{self.total_steps}",
            f"epoch {epoch}/{total_epochs}",
            f"kimg {kimg:.1f}",
            f"{self.images / elapsed if elapsed > 0 else 0.0:.1f} img/s",
            f"elapsed {format_duration(elapsed)}",
            f"ETA {eta}",
            peak_memory(self.device),
            *(f"{name} {value:.3f}" for name, value in means.items()),
        ]
        log.info("  ".join(fields))
        self.bar.set_postfix({name: f"{value:.3f}" for name, value in means.items()}, refresh=False)

    def close(self) -> None:
        self.bar.close()

    def __enter__(self) -> "TrainingTicks":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
