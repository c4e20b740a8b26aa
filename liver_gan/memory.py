"""What fits in memory, checked before it is allocated.

The allocator refuses a request larger than the address space at once, but a merely oversized one
(a model a few times this machine's memory, a slice cache of 100000x100000 slices) can be granted
lazily and then end in the kernel's out-of-memory kill, with no message.  Each such size is
estimated from the config first and refused in one line, the estimate in it.
"""

from __future__ import annotations

import os
from pathlib import Path

from liver_gan.errors import LiverGanError

MEMINFO = Path("/proc/meminfo")
GIB = 1024**3
MIB = 1024**2


def available_bytes() -> int | None:
    """Host memory free for new allocations (Linux's MemAvailable, else the free pages), or None
    where the system does not say.  Models and the slice cache are built in host memory first."""
    try:
        for line in MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024  # reported in kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, AttributeError):
        return None


def format_bytes(count: float) -> str:
    return f"{count / GIB:.1f} GiB" if count >= GIB else f"{count / MIB:.1f} MiB"


def require_fits(needed: int, what: str, fix: str) -> None:
    """Refuse ``what`` (e.g. "the dcgan model at dataset.resolution=64, its weights") when its ``needed`` bytes exceed
    the host memory available; ``fix`` says what to change."""
    available = available_bytes()
    if available is not None and needed > available:
        raise LiverGanError(
            f"{what}: about {format_bytes(needed)} needed, more than the {format_bytes(available)} of memory "
            f"available on this machine; {fix}"
        )
