"""Console entry points; each is a thin Hydra (or argparse) app over the library."""

from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path
from typing import Any, Callable, TypeVar

import hydra
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

from liver_gan.config import check_schema_keys, register_configs
from liver_gan.device import reserve_cublas_workspace
from liver_gan.errors import LiverGanError
from liver_gan.training.run_dir import register_run_dir_resolver

Task = TypeVar("Task", bound=Callable[..., Any])

reserve_cublas_workspace()  # before any tool's first CUDA matmul (liver_gan.device says why)

log = logging.getLogger(__name__)


def config_dir() -> Path:
    """The shipped ``liver_gan/conf`` of an installed wheel, else the checkout's top-level ``conf/``.

    ``conf/`` has one source, the checkout's top level; building a wheel copies it into the package
    (see setup.py), while an editable install or ``PYTHONPATH`` reads it in place.
    """
    package = Path(__file__).resolve().parents[1]
    shipped = package / "conf"
    return shipped if shipped.is_dir() else package.parent / "conf"


CONFIG_DIR = str(config_dir())


def group_options(choices: DictConfig) -> str:
    """The help text's list of config groups: the groups this tool's config reads (its
    ``hydra.runtime.choices``, Hydra's own left out), each with every option Hydra can find,
    user --config-dir presets included, and the current choice starred."""
    loader = GlobalHydra.instance().config_loader()
    lines = []
    for group in sorted(group for group in choices if not group.startswith("hydra/")):
        options = [f"{option}*" if option == choices[group] else option for option in loader.get_group_options(group)]
        lines.append(f"  {group}: {', '.join(options)}")
    return "\n".join(lines) if lines else "  (none: override the keys below)"


def run_hydra_app(task: Callable[[DictConfig], Any], config_name: str) -> None:
    """Every Hydra tool starts the same way: register the schemas, compose ``conf/<config_name>.yaml``
    with the command line, refuse keys its schemas lack, and run ``task`` on it."""
    register_configs()
    OmegaConf.register_new_resolver("group_options", group_options, replace=True)
    register_run_dir_resolver()

    @functools.wraps(task)
    def checked_task(cfg: DictConfig) -> Any:
        check_schema_keys(cfg)
        return task(cfg)

    hydra.main(config_path=CONFIG_DIR, config_name=config_name, version_base="1.3")(report_user_errors(checked_task))()


def report_user_errors(task: Task) -> Task:
    """Turn a :class:`LiverGanError` into one line on stderr and exit status 2.

    Every error, that one line or another exception's traceback, also goes to the run's log
    files (Hydra's ``<run dir>/<task>.log``), so a failed run's log does not end as if it succeeded.
    """

    @functools.wraps(task)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return task(*args, **kwargs)
        except LiverGanError as error:
            log_to_files(f"error: {error}")
            print(f"liver-gan: error: {error}", file=sys.stderr)
            raise SystemExit(2) from None
        except Exception as error:
            log_to_files(f"the job failed: {error}", exc_info=True)
            raise

    return wrapper  # type: ignore[return-value]


def log_to_files(message: str, exc_info: bool = False) -> None:
    """An ERROR record for the root logger's file handlers only: the terminal shows the error once, on stderr."""
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, message, None, sys.exc_info() if exc_info else None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)
