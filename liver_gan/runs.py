"""A finished run: its checkpoint, its trained generator and the dataset it trained on.

What liver-gan-sample, -eval, -utility and -vtt open.  A run is given as its run dir (its
``checkpoints/last.pt``) or as one checkpoint file; the checkpoint's config is validated before
anything is built from it (:func:`liver_gan.training.checkpoint.saved_config`).

A run dir is as untrusted as a shared checkpoint: the overrides recorded in its
``.hydra/overrides.yaml`` are read only through :func:`saved_overrides`, which every tool that
replays or reads them calls (``trainer.resume=auto``, ``liver-gan-utility inserted=RUN``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
import yaml
from omegaconf import DictConfig, OmegaConf
from torch import nn

from liver_gan.config import TrainConfig
from liver_gan.data.cache import is_entry
from liver_gan.data.dataset import PreparedDataset, dataset_cache_key, prepare_dataset
from liver_gan.data.phantom.storage import is_complete_phantom, phantom_folder
from liver_gan.data.schema import DatasetConfig, DatasetName
from liver_gan.errors import LiverGanError
from liver_gan.models.registry import build_generator, is_inpainter
from liver_gan.models.schema import require_registered_builder
from liver_gan.training.checkpoint import (
    AUGMENT_SCHEMAS,
    EMA_KEY,
    INSTANTIATE_KEYS,
    OPTIMIZER_TARGET,
    checkpoint_must_fit,
    last_checkpoint,
    load_checkpoint,
)

SAVED_OVERRIDES = Path(".hydra") / "overrides.yaml"
# Where a checkpoint's phantom is synthesized and its caches built when its own paths may not be written.
LOCAL_OUTPUTS = Path("outputs")
# Hydra's override prefixes that add (+), force-add (++) or delete (~) keys: never replayed from disk.
KEY_CHANGING_PREFIXES = ("+", "~")


def find_checkpoint(run_dir_or_file: Path) -> Path:
    """A checkpoint file as given, or ``<run_dir>/checkpoints/last.pt`` of a run directory."""
    path = Path(run_dir_or_file)
    if path.is_file():
        return path
    last = last_checkpoint(path)
    if not last.is_file():
        raise LiverGanError(f"no checkpoint at {last}; pass a run dir of a liver-gan-train run or a .pt file")
    return last


def load_generator(run_dir_or_file: Path, device: torch.device) -> tuple[nn.Module, DictConfig]:
    """The trained generator of a run (eval mode, on ``device``) and the run's validated config.

    The generator is a GAN's G or a diffusion model; its EMA copy when the run kept one
    (``trainer.ema_kimg``).
    """
    path = find_checkpoint(run_dir_or_file)
    state = load_checkpoint(path)
    cfg = state["config"]
    if is_inpainter(cfg):
        raise LiverGanError(
            f"{path} is a run of model=inpaint, which fills lesions and draws no slices from noise: "
            "use it as lesion=learned lesion.checkpoint=RUN_DIR"
        )
    with checkpoint_must_fit(path):
        generator = build_generator(cfg)
        generator.load_state_dict(state[EMA_KEY] if EMA_KEY in state else state["generator"])
    if not all(torch.isfinite(tensor).all() for tensor in generator.state_dict().values() if tensor.is_floating_point()):
        raise LiverGanError(f"checkpoint {path} holds NaN or infinite weights (a diverged run); pass an earlier checkpoint")
    return generator.to(device).eval(), cfg


def run_dataset(train_cfg: DictConfig, **overrides: Any) -> PreparedDataset:
    """The dataset a run trained on, from its saved config and seed (so the same patient split).

    ``overrides`` replace dataset options, e.g. ``subset="all"`` or a ``root`` and ``cache_dir``
    the user gives.  The paths in a checkpoint's config are read, never written to
    (:func:`readable_dataset_paths`).
    """
    dataset_cfg = OmegaConf.merge(OmegaConf.structured(DatasetConfig), train_cfg.dataset, overrides)
    root, cache_dir = readable_dataset_paths(dataset_cfg, "root" in overrides, "cache_dir" in overrides)
    dataset_cfg.root, dataset_cfg.cache_dir = str(root), str(cache_dir)
    return prepare_dataset(dataset_cfg, seed=train_cfg.seed)


def given_paths(data: DictConfig) -> dict[str, str]:
    """The ``dataset.root`` and ``dataset.cache_dir`` a user gave a tool (:class:`liver_gan.config.RunDataConfig`),
    as ``run_dataset`` overrides."""
    return {key: str(value) for key, value in data.items() if value is not None}


def readable_dataset_paths(dataset_cfg: DictConfig, root_given: bool, cache_given: bool) -> tuple[Path, Path]:
    """The dataset root and cache dir to use for a checkpoint's dataset, which may name anyone's folders.

    A saved phantom root is used only when it already holds the whole phantom, a saved cache dir
    only when it already holds this dataset's entry; otherwise the phantom is synthesized and the
    cache built under the current ``outputs/``.  A saved root of real data is read, and must exist.
    Paths the user gave (``root_given``, ``cache_given``) are used as they are.
    """
    root = Path(dataset_cfg.root).expanduser()
    phantom = DatasetName(dataset_cfg.name) is DatasetName.phantom
    data_root = phantom_folder(root, dataset_cfg.phantom) if phantom else root
    if not root_given:
        if phantom and not is_complete_phantom(data_root, dataset_cfg.phantom):
            root = LOCAL_OUTPUTS / "phantom"
        elif not root.is_dir():
            raise LiverGanError(
                f"dataset.root={root} (from the run's config) is no folder here; give the run's data with dataset.root=DIR"
            )
    saved_cache = Path(dataset_cfg.cache_dir).expanduser()
    if cache_given or (root != LOCAL_OUTPUTS / "phantom" and _holds_entry(saved_cache, dataset_cfg, data_root)):
        return root, saved_cache
    return root, LOCAL_OUTPUTS / "cache"


def _holds_entry(cache_dir: Path, dataset_cfg: DictConfig, data_root: Path) -> bool:
    return data_root.is_dir() and is_entry(cache_dir / dataset_cache_key(dataset_cfg, data_root))


def read_overrides_file(path: Path) -> list[str]:
    """The list of override strings in a Hydra ``overrides.yaml``; one line naming ``path`` if it is none."""
    try:
        overrides = yaml.safe_load(Path(path).read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise LiverGanError(f"{path} cannot be read ({reason}); it is not the record of a liver-gan run") from None
    overrides = [] if overrides is None else overrides
    if not isinstance(overrides, list) or not all(isinstance(override, str) for override in overrides):
        raise LiverGanError(f"{path} is not a list of overrides (key=value lines); it is not the record of a liver-gan run")
    return overrides


def saved_overrides(run_dir: Path, schema: type = TrainConfig) -> list[str]:
    """The overrides a run was started with (``<run_dir>/.hydra/overrides.yaml``), checked before any is used.

    A run dir may come from anyone, so only what a user could have meant for that run is
    accepted: a choice of one of the tool's config groups (``model=dcgan``) or a value for a key
    of ``schema``'s own groups (``trainer.epochs=3``).  Refused, in one line naming the file and
    the override: ``hydra.*`` (Hydra's callbacks and launchers run code), the key-adding and
    deleting prefixes ``+``, ``++`` and ``~``, interpolations, instantiate keys other than a
    registered model builder, a ``torch.optim`` class or a liver-gan augmentation, and keys
    ``schema`` lacks.  Returns ``[]`` when the run dir has no record.
    """
    path = Path(run_dir) / SAVED_OVERRIDES
    if not path.is_file():
        return []
    overrides = read_overrides_file(path)
    for override in overrides:
        reason = _refusal(override, schema)
        if reason is not None:
            raise LiverGanError(
                f"{path}: refusing to replay {override!r} ({reason}); remove that line, or give the run's options on the command line"
            )
    return overrides


def _refusal(override: str, schema: type) -> str | None:
    """Why ``override`` may not be replayed from a run dir, or None when it may."""
    key, equals, value = override.partition("=")
    if not equals:
        return "not a key=value override"
    if key.startswith(KEY_CHANGING_PREFIXES):
        return "overrides that add or delete keys are not replayed"
    parts = key.split(".")
    if parts[0] == "hydra" or parts[0].startswith("hydra/"):
        return "Hydra's own settings are not replayed"
    if "${" in value:
        return "interpolations are not replayed"
    if len(parts) == 1 and parts[0] in config_groups():
        return None
    fields = {field.name for field in dataclasses.fields(schema)}
    if parts[0] not in fields:
        return f"{parts[0]} is neither a config group nor a key of {schema.__name__}"
    if parts[-1] in INSTANTIATE_KEYS:
        return _target_refusal(key, value)
    return None


def _target_refusal(key: str, value: str) -> str | None:
    if key == "optimizer._target_" and OPTIMIZER_TARGET.fullmatch(value):
        return None
    if key == "augment._target_" and value in AUGMENT_SCHEMAS:
        return None
    if key == "model._target_":
        try:
            require_registered_builder(value, key)
        except LiverGanError:
            return "not one of liver-gan's model builders"
        return None
    return "not a class liver-gan builds"


def config_groups() -> set[str]:
    """The config groups shipped in ``conf/`` (Hydra's own ``hydra/`` left out)."""
    from liver_gan.cli import config_dir  # the CLI package imports this module's neighbours

    return {path.name for path in config_dir().iterdir() if path.is_dir() and path.name != "hydra"}
