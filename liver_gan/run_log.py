"""The run's log files, as Hydra opens them on the root logger: found and closed by the folder they
write into, so that a run dir refused at its start can be removed with its log.

Torch-free, below both ``liver_gan/cli/`` and ``liver_gan/lesions/``; each caller keeps its own
policy on what it removes.
"""

from __future__ import annotations

import logging
from pathlib import Path


def file_logs_in(folder: Path) -> list[logging.FileHandler]:
    """The root logger's file handlers whose log file lies directly in ``folder``."""
    folder = Path(folder).resolve()
    return [
        handler
        for handler in logging.getLogger().handlers
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).resolve().parent == folder
    ]


def close_file_logs_in(folder: Path) -> list[Path]:
    """Detach from the root logger and close every file handler writing into ``folder``; the log
    files they wrote, which the caller may now remove (no later record reopens them)."""
    root = logging.getLogger()
    closed = []
    for handler in file_logs_in(folder):
        root.removeHandler(handler)
        handler.close()
        closed.append(Path(handler.baseFilename))
    return closed
