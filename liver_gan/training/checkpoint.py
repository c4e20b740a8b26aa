"""Training checkpoints: the format, writing and reading it, and the checks and restore of a resume.

A checkpoint is one dict saved atomically with :func:`torch.save`: the ``generator`` (a GAN's G,
or the diffusion model), ``epoch`` (epochs completed) and ``step``, every random stream (``rng``),
the fixed noise (and labels) of the sample grids, the resolved config as plain containers and the
dataset key (``CHECKPOINT_KEYS``); the family's other networks and its optimizers under their own
keys (a GAN's ``discriminator``, ``optimizer_g`` and ``optimizer_d``; a diffusion model's
``optimizer``); ``generator_ema``, the EMA copy, when ``trainer.ema_kimg`` is set; and what
``liver-gan-train`` needs to continue exactly (``RESUME_KEYS``).  It holds only
tensors and plain Python values, so it loads with ``weights_only=True``.

Checkpoints are shared, so opening one must never run anything (issue 11): ``weights_only``
stops pickled code, and :func:`saved_config` stops config code.  A saved config is validated
against the same schema as a fresh run, its model must name one of liver-gan's registered
builders, and no other ``_target_`` (nor any interpolation) may appear in it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from liver_gan.atomic import atomic_torch_save, atomic_write
from liver_gan.augment_schema import ADAConfig, AugmentConfig
from liver_gan.config import TrainConfig
from liver_gan.errors import LiverGanError
from liver_gan.distributed import RANK_STREAMS_KEY
from liver_gan.models.schema import require_registered_builder
from liver_gan.training.seeding import restore_rng_state, rng_state
from liver_gan.training.ema import GeneratorEMA
from liver_gan.training.run_dir import holds_outputs
from liver_gan.training.family import Family
from liver_gan.training.state import BatchOrder, FixedSamples, Progress

if TYPE_CHECKING:  # run_state.py imports tensorboard.py, which imports this module
    from liver_gan.training.run_state import RunState

log = logging.getLogger(__name__)

CHECKPOINT_KEYS = (
    "generator",
    "epoch",
    "step",
    "rng",
    "fixed_noise",
    "fixed_labels",
    "config",
    "dataset_key",
)
# Written by liver-gan-train beside the documented keys, and needed to continue exactly.
RESUME_KEYS = ("train_seconds", "log_window")
# The family's own state (ADA's p, the D step count); checkpoints from before it existed had no
# augmentation, so they resume without it.
FAMILY_STATE_KEY = "family_state"
BEST_FID_KEY = "best_fid"  # the lowest snapshot FID so far (eval.every_kimg), None before the first
# Options that must equal the checkpoint's when resuming: they fix the weights' shapes, the
# optimizer state's meaning, the patient split (which the dataset key does not cover), the
# batch order and the fixed noise.
RESUME_MUST_MATCH = (
    "model",
    "optimizer._target_",
    "dataset.subset",
    "dataset.val_fraction",
    "dataset.val_patients",
    "dataset.test_patients",
    "seed",
    "trainer.batch_size",
    "trainer.num_fixed_samples",
    "trainer.ema_kimg",  # the EMA copy is in the checkpoint exactly when it is set
    "augment",  # ADA's p is only meaningful for the ops it steered
)
EMA_KEY = "generator_ema"
# Hydra's instantiate keys; a saved config holds them only where liver-gan wrote them.
INSTANTIATE_KEYS = ("_target_", "_args_", "_partial_", "_recursive_", "_convert_")
SAVED_TARGETS = ("model._target_", "optimizer._target_", "augment._target_")
# The augment group's classes, each with its schema: the only augment targets a checkpoint may name.
AUGMENT_SCHEMAS = {"liver_gan.augment.Augment": AugmentConfig, "liver_gan.augment.AdaptiveAugment": ADAConfig}
OPTIMIZER_TARGET = re.compile(r"torch\.optim\.[A-Za-z]\w*")


def last_checkpoint(run_dir: Path) -> Path:
    """``<run_dir>/checkpoints/last.pt``: the newest checkpoint of a run, whether or not it exists yet."""
    return Path(run_dir) / "checkpoints" / "last.pt"


def plain_config(cfg: DictConfig) -> dict[str, Any]:
    """``cfg`` resolved into plain Python values (enums as their names), as checkpoints and TensorBoard keep it."""
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically: a killed run leaves the previous file intact."""
    missing = [key for key in CHECKPOINT_KEYS if key not in state]
    if missing:
        raise ValueError(f"a checkpoint needs the keys {missing}")
    atomic_torch_save(state, Path(path))


def link_checkpoint(source: Path, destination: Path) -> None:
    """Make ``destination`` (e.g. last.pt) the same file as ``source``, atomically and without a copy.

    A hard link costs nothing, where saving the thesis MLP's checkpoint again takes a tenth of a
    second; file systems without hard links get a copy.
    """
    atomic_write(Path(destination), lambda tmp: _link_or_copy(Path(source), tmp))


def _link_or_copy(source: Path, tmp: Path) -> None:
    tmp.unlink()
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The checkpoint at ``path``, its ``config`` validated (:func:`saved_config`) into a DictConfig."""
    path = Path(path)
    if not path.is_file():
        raise LiverGanError(f"checkpoint {path} does not exist; pass an existing .pt file or run dir")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises many types for a truncated or foreign file
        raise LiverGanError(
            f"checkpoint {path} cannot be read ({type(error).__name__}); pass a liver-gan checkpoint"
        ) from error
    if not isinstance(state, dict) or any(key not in state for key in CHECKPOINT_KEYS):
        raise LiverGanError(f"{path} is not a liver-gan training checkpoint; pass a checkpoints/*.pt file of a run")
    state["config"] = saved_config(state["config"], path)
    return state


def saved_config(raw: Any, path: Path) -> DictConfig:
    """A checkpoint's saved config, checked before anything is built from it.

    Refused, in one line naming ``path`` and the key: a ``_target_`` (or other instantiate key)
    anywhere but ``model._target_``, ``optimizer._target_`` and ``augment._target_``; a model
    builder that is not liver-gan's; an optimizer outside ``torch.optim``; an augmentation that is
    not liver_gan.augment's; an interpolation (a saved config is
    resolved); and anything the training schema does not accept.
    """
    if not isinstance(raw, dict):
        raise LiverGanError(f"checkpoint {path} holds no config mapping; pass a checkpoint written by liver-gan-train")
    for key, value in _entries(raw):
        if key.rpartition(".")[2] in INSTANTIATE_KEYS and key not in SAVED_TARGETS:
            raise LiverGanError(f"checkpoint {path}: its config holds {key}, which liver-gan never saves; refusing to open it")
        if isinstance(value, str) and "${" in value:
            raise LiverGanError(f"checkpoint {path}: its config holds an interpolation at {key}; refusing to open it")
    model = raw.get("model")
    schema = require_registered_builder(model.get("_target_") if isinstance(model, dict) else None, f"checkpoint {path}")
    optimizer = raw.get("optimizer")
    optimizer_target = optimizer.get("_target_") if isinstance(optimizer, dict) else None
    if not isinstance(optimizer_target, str) or not OPTIMIZER_TARGET.fullmatch(optimizer_target):
        raise LiverGanError(
            f"checkpoint {path}: optimizer._target_={optimizer_target!r} is not a torch.optim class; refusing to open it"
        )
    augment = raw.get("augment", {})
    augment_target = augment.get("_target_", "liver_gan.augment.Augment") if isinstance(augment, dict) else None
    if augment_target not in AUGMENT_SCHEMAS:
        raise LiverGanError(
            f"checkpoint {path}: augment._target_={augment_target!r} is not one of liver-gan's augmentations; refusing to open it"
        )
    typed = {"model": OmegaConf.structured(schema), "augment": OmegaConf.structured(AUGMENT_SCHEMAS[augment_target])}
    try:
        cfg = OmegaConf.merge(OmegaConf.structured(TrainConfig), typed, raw)
    except OmegaConfBaseException as error:
        reason = str(error).splitlines()[0]
        raise LiverGanError(f"checkpoint {path}: config key {error.full_key} does not fit liver-gan's schema ({reason})") from None
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise LiverGanError(f"checkpoint {path}: its config lacks {', '.join(missing)}; pass a checkpoint of liver-gan-train")
    return cfg


def _entries(tree: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Every ``(dotted key, value)`` of a nested dict/list, nodes and leaves alike."""
    items = tree.items() if isinstance(tree, dict) else enumerate(tree) if isinstance(tree, list) else ()
    for key, value in items:
        dotted = f"{prefix}{key}"
        yield dotted, value
        yield from _entries(value, f"{dotted}.")


def _leaves(tree: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(dotted key, value)`` of the non-mapping values of a nested dict (lists stay whole)."""
    for key, value in tree.items():
        if isinstance(value, dict):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def write_checkpoint(
    state: dict[str, Any], run_dir: Path, progress: Progress, steps_per_epoch: int, keep_last_n: int | None
) -> None:
    """``state`` (:func:`checkpoint_state`) as checkpoints/last.pt, plus epoch_XXXX.pt at an epoch's
    end (the newest ``keep_last_n``, ``trainer.keep_last_n``)."""
    last = last_checkpoint(run_dir)
    epochs, rest = divmod(progress.step, steps_per_epoch)
    if rest == 0:
        epoch_file = last.with_name(f"epoch_{epochs:04d}.pt")
        save_checkpoint(epoch_file, state)
        link_checkpoint(epoch_file, last)
        prune_epoch_checkpoints(last.parent, keep_last_n)
    else:
        save_checkpoint(last, state)
    progress.last_checkpoint = last


def write_best_checkpoint(state: dict[str, Any], run_dir: Path) -> Path:
    """``state`` (:func:`checkpoint_state`) as checkpoints/best.pt, a checkpoint like last.pt (it
    resumes and every tool opens it)."""
    best = last_checkpoint(run_dir).with_name("best.pt")
    save_checkpoint(best, state)
    return best


def checkpoint_state(run: RunState, rank_streams: list[dict[str, Any]] | None) -> dict[str, Any]:
    """Everything a checkpoint holds (see the module docstring), at ``run.progress.step``;
    ``rank_streams``: in a run of several ranks, every rank's noise stream (liver_gan/distributed.py)."""
    family, progress, batches = run.family, run.progress, run.batches
    return {
        **{key: network.state_dict() for key, network in family.networks().items()},
        **{key: optimizer.state_dict() for key, optimizer in family.optimizers().items()},
        **({} if run.ema is None else {EMA_KEY: run.ema.state_dict()}),
        "epoch": progress.step // batches.steps_per_epoch,
        "step": progress.step,
        "rng": {
            **rng_state(batches.device),
            "batch_order": batches.state(),
            **({} if rank_streams is None else {RANK_STREAMS_KEY: rank_streams}),
        },
        "fixed_noise": run.fixed.noise.cpu(),
        "fixed_labels": None if run.fixed.labels is None else run.fixed.labels.cpu(),
        "config": plain_config(run.cfg),
        "dataset_key": run.dataset.key,
        "train_seconds": progress.train_seconds,
        "log_window": progress.window.state_dict(),
        FAMILY_STATE_KEY: family.state_dict(),
        BEST_FID_KEY: progress.best_fid,
    }


def prune_epoch_checkpoints(checkpoints: Path, keep: int | None) -> None:
    """Delete all but the newest ``keep`` epoch_XXXX.pt; last.pt (a link of its own) and best.pt stay."""
    if keep is None:
        return
    epoch_files = sorted(checkpoints.glob("epoch_*.pt"))
    for path in epoch_files[: max(len(epoch_files) - keep, 0)]:
        path.unlink()


def resume_checkpoint(resume: str, run_dir: Path) -> Path | None:
    """The checkpoint ``trainer.resume`` asks for: none, auto (this run dir's last.pt, if any) or a file.

    A file of another run continues that run in ``run_dir`` only when ``run_dir`` holds no run's
    outputs of its own: a cross-run resume never replaces another run's checkpoints and metrics.
    """
    if resume == "none":
        return None
    if resume == "auto":
        last = last_checkpoint(run_dir)
        if last.is_file():
            return last
        epoch_files = sorted(last.parent.glob("epoch_*.pt"))
        if epoch_files:
            raise LiverGanError(
                f"trainer.resume=auto: {last.parent} holds epoch checkpoints but no last.pt; "
                f"continue from the newest with trainer.resume={epoch_files[-1]}"
            )
        log.info("trainer.resume=auto: no checkpoint in %s, starting a fresh run", last.parent)
        return None
    path = Path(resume)
    if not path.is_file():
        raise LiverGanError(
            f"trainer.resume={resume}: no such checkpoint file; use none, auto or a checkpoints/*.pt path"
        )
    if path.resolve().parent != (Path(run_dir) / "checkpoints").resolve() and holds_outputs(run_dir):
        raise LiverGanError(
            f"trainer.resume={resume} continues another run, but {run_dir} holds a run of its own, which it would "
            "replace; continue in an empty hydra.run.dir (or none: the default is a new dir)"
        )
    return path


def check_resumable(state: dict[str, Any], cfg: DictConfig, path: Path) -> None:
    """Before the dataset build: ``state`` was written by liver-gan-train, with ``cfg``'s ``RESUME_MUST_MATCH``."""
    if any(key not in state for key in RESUME_KEYS):
        raise LiverGanError(f"checkpoint {path} was not written by liver-gan-train and cannot be resumed; start afresh")
    saved, current = dict(_leaves(plain_config(state["config"]))), dict(_leaves(plain_config(cfg)))
    differing = [
        key
        for key in sorted(saved.keys() | current.keys())
        if any(key == option or key.startswith(f"{option}.") for option in RESUME_MUST_MATCH)
        and saved.get(key) != current.get(key)
    ]
    if differing:
        pairs = "; ".join(f"{key} ({saved.get(key)} there, {current.get(key)} here)" for key in differing)
        raise LiverGanError(
            f"checkpoint {path} differs from this config in {pairs}; resume with the same {', '.join(differing)}"
        )


def check_dataset(state: dict[str, Any], dataset_key: str, path: Path) -> None:
    if state["dataset_key"] != dataset_key:
        raise LiverGanError(
            f"checkpoint {path} was trained on dataset {state['dataset_key'][:12]}, but these dataset.* options "
            f"give {dataset_key[:12]}; resume with the dataset options of that run"
        )


# What torch, numpy and Python raise for weights, random states or counters that do not fit.
DOES_NOT_FIT = (RuntimeError, KeyError, TypeError, ValueError, AttributeError, IndexError)


@contextlib.contextmanager
def checkpoint_must_fit(path: Path) -> Iterator[None]:
    """Loading a checkpoint's contents: what does not fit becomes one line naming ``path``."""
    try:
        yield
    except LiverGanError:
        raise
    except DOES_NOT_FIT as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        raise LiverGanError(
            f"checkpoint {path} does not fit its config ({type(error).__name__}: {reason}); "
            "pass an intact checkpoint written by liver-gan-train"
        ) from None


def restore(
    state: dict[str, Any],
    family: Family,
    ema: GeneratorEMA | None,
    batches: BatchOrder,
    progress: Progress,
    columns: int,
    path: Path,
) -> FixedSamples:
    """Load ``state`` into the networks, optimizers, random streams and ``progress``; return its fixed noise.

    A checkpoint whose weights, random states or counters do not fit this run is refused in one
    line naming ``path``.
    """
    step = state.get("step")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise LiverGanError(f"checkpoint {path}: step={step!r} is not a count of steps; resume from an intact checkpoint")
    device = batches.device
    with checkpoint_must_fit(path):
        for key, network in family.networks().items():
            network.load_state_dict(state[key])
        for key, optimizer in family.optimizers().items():
            load_optimizer_state(optimizer, state[key], key)
        if ema is not None:
            ema.load_state_dict(state[EMA_KEY])
        if FAMILY_STATE_KEY in state:
            family.load_state_dict(state[FAMILY_STATE_KEY])
        restore_rng_state(state["rng"], device)
        batches.load_state(state["rng"]["batch_order"])
        progress.step = state["step"]
        progress.train_seconds = state["train_seconds"]
        progress.window.load_state_dict(state["log_window"])
        progress.best_fid = state.get(BEST_FID_KEY)  # absent from checkpoints older than eval.every_kimg
        progress.last_checkpoint = path
        log.info("resuming from %s at step %d (epoch %d)", path, state["step"], state["epoch"])
        labels = state["fixed_labels"]
        return FixedSamples(state["fixed_noise"].to(device), None if labels is None else labels.to(device), columns)


def load_optimizer_state(optimizer: torch.optim.Optimizer, saved: dict[str, Any], name: str) -> None:
    """The saved per-parameter state (moments, step counts) under this run's settings.

    ``optimizer`` was built from the current config on the current device, so its groups hold
    the learning rate, betas, weight decay and implementation (fused/foreach) to use now; the
    saved groups' values would otherwise win, and a changed ``optimizer.lr`` would be recorded
    but not used, or a CUDA run's ``fused=True`` kept on a device without fused kernels.
    """
    groups = []
    for saved_group, current_group in zip(saved["param_groups"], optimizer.state_dict()["param_groups"]):
        settings = {key: value for key, value in current_group.items() if key != "params"}
        for key, value in settings.items():
            if saved_group.get(key) != value:
                log.info("resuming %s with %s=%s from this config (the checkpoint had %s)", name, key, value, saved_group.get(key))
        groups.append({**saved_group, **settings})
    optimizer.load_state_dict({**saved, "param_groups": groups})
