"""Structured configs of ``liver-gan-utility`` (conf/utility.yaml and the ``classifier`` group)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


class SyntheticClasses(str, Enum):
    matched = "matched"  # the class proportions of the real training slices
    balanced = "balanced"  # as many healthy as tumor slices


@dataclass
class ClassifierConfig:
    """The healthy-vs-tumor classifier and how it is trained; the same for every arm and seed.

    ``model`` is instantiated with ``resolution=R`` and must map (N, 1, R, R) images in [-1, 1] to
    (N,) tumor logits, so a user's own network drops in with its own ``_target_`` and arguments.
    """

    model: Any = MISSING
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-4
    horizontal_flip: bool = True
    vertical_flip: bool = False


@dataclass
class UtilityConfig:
    """One evaluation: a conditional ``generator``, or a ``tumor_generator`` and a ``healthy_generator``."""

    generator: Optional[str] = None
    tumor_generator: Optional[str] = None
    healthy_generator: Optional[str] = None
    classifier: ClassifierConfig = MISSING
    ratios: List[float] = field(default_factory=lambda: [0.5, 1.0])  # synthetic / real training slices
    seeds: List[int] = field(default_factory=lambda: [0, 1, 2])
    synthetic_classes: SyntheticClasses = SyntheticClasses.matched
    device: str = "auto"


def register_utility_configs() -> None:
    """Register the schemas; called by ``liver-gan-utility`` (and tests) before Hydra composes."""
    store = ConfigStore.instance()
    store.store(name="utility_schema", node=UtilityConfig)
    store.store(group="classifier", name="base_classifier", node=ClassifierConfig)
