"""Console entry points; each is a thin Hydra app over the library."""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any, Callable, TypeVar

from liver_gan.errors import LiverGanError

# conf/ sits beside the package in the source tree (installs are editable: pip install -e .).
CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "conf")

Task = TypeVar("Task", bound=Callable[..., Any])


def report_user_errors(task: Task) -> Task:
    """Turn a :class:`LiverGanError` into one line on stderr and exit status 2."""

    @functools.wraps(task)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return task(*args, **kwargs)
        except LiverGanError as error:
            print(f"liver-gan: error: {error}", file=sys.stderr)
            raise SystemExit(2) from None

    return wrapper  # type: ignore[return-value]
