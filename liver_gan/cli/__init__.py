"""Console entry points; each is a thin Hydra (or argparse) app over the library.

Nothing here imports torch: ``--help`` and the errors of a mistyped command line come at once, and
each tool imports its task (and torch with it) only when the task runs (:func:`run_hydra_app`).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import logging
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import hydra
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from liver_gan.cli.hydra_errors import COMPOSITION_ERRORS, one_line, unwritable_run_dir
from liver_gan.cli.torch_versions import check_torch_pair
from liver_gan.config import check_schema_keys, register_configs
from liver_gan.errors import LiverGanError
from liver_gan.run_log import close_file_logs_in

Task = TypeVar("Task", bound=Callable[..., Any])

log = logging.getLogger(__name__)

# liver_gan.training.run_dir's resolver name (that module imports torch, so it is read from there only to claim)
RUN_DIR_RESOLVER = "unique_run_dir"
# Hydra's switch for its full traceback; a user who sets it gets Hydra's own report of every error.
FULL_ERROR = "HYDRA_FULL_ERROR"
# What Hydra writes into a run dir before the task starts: its record of the config (.hydra/) and the log.
HYDRA_RECORD = {"config.yaml", "hydra.yaml", "overrides.yaml"}

_claimed_run_dirs: set[Path] = set()


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


def run_hydra_app(task: Callable[[DictConfig], Any] | str, config_name: str) -> None:
    """Every Hydra tool starts the same way: check the torch pair, register the schemas, compose
    ``conf/<config_name>.yaml`` with the command line, refuse keys its schemas lack, and run ``task``.

    ``task`` may be ``"module:function"``, imported only when the task runs, so that ``--help``
    and a refused command line import no torch.  Hydra's composition errors end the program with
    one line and status 2 (:mod:`liver_gan.cli.hydra_errors`); ``HYDRA_FULL_ERROR=1`` keeps Hydra's
    full trace.  A single run refused at its start leaves no run dir behind (:func:`remove_unstarted_run_dir`).
    A run dir Hydra cannot create or write (its ``.hydra/`` record and log come before any task
    starts) is one line too, naming the path and what to do.
    """
    report_user_errors(check_torch_pair)()
    register_configs()
    OmegaConf.register_new_resolver("group_options", group_options, replace=True)
    # Cached like Hydra's ${now:}: every read of hydra.run.dir in one run gives the one claimed dir.
    OmegaConf.register_new_resolver(RUN_DIR_RESOLVER, claim_run_dir, use_cache=True, replace=True)
    user_wants_full_error = FULL_ERROR in os.environ
    tasks_started = []

    @report_user_errors
    def checked(cfg: DictConfig) -> Any:
        check_schema_keys(cfg)
        return _imported(task)(cfg)

    def checked_task(cfg: DictConfig) -> Any:
        tasks_started.append(True)
        with hydra_reports_task_errors(user_wants_full_error):
            try:
                return checked(cfg)
            except SystemExit as exit_info:
                if exit_info.code == 2:
                    remove_unstarted_run_dir(Path(HydraConfig.get().runtime.output_dir))
                raise

    # Hydra names the job (and its log, <name>.log) after the task's module: train, sample, ...
    checked_task.__module__ = task.__module__ if callable(task) else task.partition(":")[0]
    if not user_wants_full_error:
        os.environ[FULL_ERROR] = "1"  # Hydra re-raises its composition errors, for one_line to report
    try:
        hydra.main(config_path=CONFIG_DIR, config_name=config_name, version_base="1.3")(checked_task)()
    except COMPOSITION_ERRORS as error:
        if user_wants_full_error:
            raise
        print_error(one_line(error))
        raise SystemExit(2) from None
    except Exception as error:
        # Before any task starts, only Hydra's own writes into its run dir can fail this way.
        message = None if user_wants_full_error or tasks_started else unwritable_run_dir(error)
        if message is None:
            raise
        print_error(message)
        raise SystemExit(2) from None
    finally:
        if not user_wants_full_error:
            os.environ.pop(FULL_ERROR, None)


@contextlib.contextmanager
def hydra_reports_task_errors(user_wants_full_error: bool) -> Iterator[None]:
    """While a task runs, Hydra's ``HYDRA_FULL_ERROR`` is as the user set it, so a task's traceback
    is Hydra's usual short one; composing the next job of a multirun sets it again."""
    if user_wants_full_error:
        yield
        return
    os.environ.pop(FULL_ERROR, None)
    yield  # an exception leaves it unset: Hydra reports the task's error as the user asked
    os.environ[FULL_ERROR] = "1"


def _imported(task: Callable[[DictConfig], Any] | str) -> Callable[[DictConfig], Any]:
    if callable(task):
        return task
    module, _, name = task.partition(":")
    return getattr(importlib.import_module(module), name)


def claim_run_dir(base: str, name: str | None = None) -> str:
    """``${unique_run_dir:...}``: :func:`liver_gan.training.run_dir.claim_new_dir`, imported (with
    torch) only when a run dir is claimed, and remembered as created by this start."""
    from liver_gan.training.run_dir import claim_new_dir

    run_dir = claim_new_dir(base, name)
    _claimed_run_dirs.add(Path(run_dir).resolve())
    return run_dir


def remove_unstarted_run_dir(run_dir: Path) -> None:
    """Remove the run dir of a single run refused at its start, so that nothing is left of it.

    Only a dir this very start claimed (``${unique_run_dir:}``, never a ``hydra.run.dir`` the user
    named), in a single run (a sweep's refused job stays, for liver-gan-summary to count as failed),
    on rank 0, and only while it holds nothing but Hydra's record and this tool's log.
    """
    if Path(run_dir).resolve() not in _claimed_run_dirs or HydraConfig.get().mode != RunMode.RUN:
        return
    if os.environ.get("RANK", "0") != "0" or not holds_only_hydra_files(run_dir):
        return
    close_file_logs_in(run_dir)
    shutil.rmtree(run_dir)


def holds_only_hydra_files(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds Hydra's ``.hydra/`` record and the tool's log, and nothing else."""
    log_name = f"{HydraConfig.get().job.name}.log"
    for path in Path(run_dir).iterdir():
        if path.name == ".hydra" and path.is_dir():
            if not {child.name for child in path.iterdir()} <= HYDRA_RECORD:
                return False
        elif path.name != log_name or not path.is_file():
            return False
    return True


def print_error(message: str) -> None:
    """The one line of an error, on stderr; once, by rank 0, under torchrun."""
    if os.environ.get("RANK", "0") == "0":
        print(f"liver-gan: error: {message}", file=sys.stderr)


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
            print_error(str(error))
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
