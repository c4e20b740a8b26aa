"""The run directory of ``liver-gan-train``: each run gets its own, and no run clobbers another's.

- Default run dirs are claimed, not just named: ``hydra.run.dir`` is
  ``${unique_run_dir:outputs/train/${now:...},${name}}``, which makes the directory with an
  exclusive ``mkdir`` and adds ``-2``, ``-3``, ... when another run took the name in the same second.
  Every tool's default output dir is claimed the same way.
- One run at a time works in a run dir (:func:`hold_run_dir`), so the temporary files of a killed
  write found at the next start (:func:`remove_stale_temporaries`) are stale for sure.
- A fresh run refuses a dir that holds checkpoints unless ``trainer.overwrite=true``.
- Hydra's own writing of ``.hydra/`` is off (``hydra.output_subdir: null``): the task writes it
  (:func:`write_hydra_record`), into a dir that holds an earlier run only once the run has passed
  its checks, so a refused resume leaves the run dir as it was.
- ``trainer.resume=auto hydra.run.dir=DIR`` takes DIR's saved overrides (:func:`with_saved_overrides`),
  checked as untrusted input (:func:`liver_gan.runs.saved_overrides`).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Iterator, Sequence

from hydra._internal.utils import get_args_parser
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from liver_gan.atomic import atomic_write_text
from liver_gan.errors import LiverGanError
from liver_gan.distributed import broadcast_from_main, start_world

log = logging.getLogger(__name__)

RUN_DIR_RESOLVER = "unique_run_dir"
NOT_IN_FILE_NAMES = r"[^-\w.]"  # what a name=<text> may not bring into a directory name
HYDRA_SUBDIR = ".hydra"
# What liver-gan-train writes into a run dir; trainer.overwrite=true removes the previous run's.
PREVIOUS_RUN_OUTPUTS = ("checkpoints", "samples", "tb", "metrics.json", "metrics.jsonl", "dataset_summary.json")
# Where atomic writes (liver_gan/atomic.py) leave ".<name>.<random>.tmp" when killed.
TEMPORARY_HOMES = (".", "checkpoints", "samples", HYDRA_SUBDIR)


def claim_new_dir(base: str, name: str | None = None) -> str:
    """Create and return ``base`` (plus ``_<name>``), or the first free ``<that>-2``, ``-3``, ...

    The exclusive ``mkdir`` makes the claim atomic: two runs started in the same second, even on
    two machines sharing ``outputs/``, never share a directory.  The ranks of one torchrun launch
    are one run: rank 0 claims the directory and the others receive its name.
    """
    world = start_world()
    return broadcast_from_main(_claim(base, name) if world.is_main else None, world)


def _claim(base: str, name: str | None) -> str:
    stem = f"{base}_{re.sub(NOT_IN_FILE_NAMES, '_', str(name))}" if name else base
    Path(stem).parent.mkdir(parents=True, exist_ok=True)
    candidate, number = stem, 1
    while True:
        try:
            os.mkdir(candidate)
            return candidate
        except FileExistsError:
            number += 1
            candidate = f"{stem}-{number}"


def register_run_dir_resolver() -> None:
    # Cached like Hydra's ${now:}: every read of hydra.run.dir in one run gives the one claimed dir.
    OmegaConf.register_new_resolver(RUN_DIR_RESOLVER, claim_new_dir, use_cache=True, replace=True)


@contextlib.contextmanager
def hold_run_dir(run_dir: Path) -> Iterator[None]:
    """Hold ``run_dir`` for this process (an advisory lock on the directory itself, no lock file)."""
    descriptor = os.open(run_dir, os.O_RDONLY)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise LiverGanError(
                f"another liver-gan-train is running in {run_dir}; wait for it, or give this run another hydra.run.dir"
            ) from None
        yield
    finally:
        os.close(descriptor)


def holds_checkpoints(run_dir: Path) -> bool:
    return any((Path(run_dir) / "checkpoints").glob("*.pt"))


def holds_outputs(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds what a run wrote (checkpoints, samples, metrics), not only its record."""
    return holds_checkpoints(run_dir) or any((Path(run_dir) / name).exists() for name in PREVIOUS_RUN_OUTPUTS[1:])


def holds_a_run(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds an earlier run's record or checkpoints, which a failed start must keep."""
    return (Path(run_dir) / HYDRA_SUBDIR).is_dir() or holds_checkpoints(run_dir)


def refuse_fresh_start(run_dir: Path, overwrite: bool) -> None:
    """A fresh run may not replace the checkpoints of a run already in ``run_dir``."""
    if holds_checkpoints(run_dir) and not overwrite:
        raise LiverGanError(
            f"{run_dir} already holds the checkpoints of a run: continue it with trainer.resume=auto, "
            "start a new run in a new hydra.run.dir (or none: the default is a new dir), "
            "or replace that run with trainer.overwrite=true"
        )


def remove_previous_run(run_dir: Path) -> None:
    """``trainer.overwrite=true``: this run's outputs must not mix with those of the run it replaces."""
    for name in PREVIOUS_RUN_OUTPUTS:
        path = Path(run_dir) / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        else:
            continue
        log.warning("trainer.overwrite=true: removed the previous run's %s", path)


def remove_stale_temporaries(run_dir: Path) -> None:
    """Remove what killed atomic writes left behind (checkpoint, sample, metrics, .hydra temporaries)."""
    for home in TEMPORARY_HOMES:
        for path in (Path(run_dir) / home).glob(".*.tmp"):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            log.info("removed %s, left by a killed write", path)


def write_hydra_record(run_dir: Path, task_cfg: DictConfig) -> None:
    """``.hydra/config.yaml``, ``hydra.yaml`` and ``overrides.yaml``, as Hydra itself writes them."""
    hydra_cfg = HydraConfig.instance().cfg
    record = {
        "config.yaml": task_cfg,
        "hydra.yaml": hydra_cfg,
        "overrides.yaml": hydra_cfg.hydra.overrides.task,
    }
    for name, node in record.items():
        atomic_write_text(Path(run_dir) / HYDRA_SUBDIR / name, OmegaConf.to_yaml(node))


def with_saved_overrides(argv: Sequence[str]) -> list[str]:
    """``argv`` of liver-gan-train, with the saved overrides of the run it resumes put in front.

    Only ``trainer.resume=auto`` with ``hydra.run.dir=DIR`` of a single run does that: the
    overrides in ``DIR/.hydra/overrides.yaml`` (only those :func:`liver_gan.runs.saved_overrides`
    accepts; anything else is refused in one line) come first, except those the user gives again
    (by key, and a config group with every key under it), so the user's own values win.  Whether
    they conflict with the checkpoint is for the resume checks to say.
    """
    from liver_gan.runs import saved_overrides  # liver_gan.runs reads checkpoints, which import this module

    args = get_args_parser().parse_args(list(argv))
    given = dict(_split(override) for override in args.overrides)
    if args.multirun or given.get("trainer.resume") != "auto" or "hydra.run.dir" not in given:
        return list(argv)
    saved = saved_overrides(Path(given["hydra.run.dir"]))
    kept = [override for override in saved if not _given_again(_split(override)[0], given)]
    if kept:
        log.info("trainer.resume=auto: taking the overrides of %s: %s", given["hydra.run.dir"], " ".join(kept))
    first = list(argv).index(args.overrides[0])
    return [*argv[:first], *kept, *argv[first:]]


def _split(override: str) -> tuple[str, str]:
    key, _, value = override.partition("=")
    return key.lstrip("+~"), value


def _given_again(key: str, given: dict[str, str]) -> bool:
    return any(key == other or key.startswith(f"{other}.") for other in given)
