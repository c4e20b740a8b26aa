"""The real-vs-real floor of FID and KID: the score of real slices against other real slices.

FID has no zero to read it against: on held-out CT, real slices score tens against other real
slices, more at small counts.  So every FID and KID is reported beside the same distance between
two disjoint sets of real slices, measured the way the generated-vs-real comparison is:

- ``val vs train`` (``train vs val`` with ``eval.real_pool=val``): up to ``num_fake`` slices of the
  split the comparison reals do not come from, in the generated images' place, against the
  comparison reals themselves.  Used when the evaluation embeds that split anyway (the memorisation
  check, on by default) and it offers at least half as many slices as the comparison reals: its
  counts then come nearer the generated comparison's than two halves' do.
- ``<pool> halves``: otherwise (and for ``real_pool=both`` or a folder of real images), the
  comparison reals split into two fixed random halves.

Either way the floor reads only features the evaluation holds already, so it costs one Fréchet
distance and one KID and no Inception pass.  The choice is fixed (not the run's seed), so every
run on the same data and selection meets the same floor.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

import numpy as np
import torch

from liver_gan.metrics.context import REAL_SELECTION_SEED, EvaluationContext, pool_size
from liver_gan.metrics.schema import RealPool

log = logging.getLogger(__name__)

Value = TypeVar("Value")

OTHER_SPLIT = {RealPool.train: RealPool.val, RealPool.val: RealPool.train}
FLOOR_KEYS = ("floor_pools", "floor_counts")  # which reals the floor compares, and how many of each


@dataclass(frozen=True)
class FloorSets:
    """Two disjoint sets of real features: ``stand_in`` in the generated images' place."""

    stand_in: np.ndarray
    reference: np.ndarray
    pools: str  # "val vs train", "train halves", ...

    def description(self) -> dict[str, object]:
        return {"floor_pools": self.pools, "floor_counts": [len(self.stand_in), len(self.reference)]}

    def digest(self) -> str:
        """sha256 of both sets' features: equal for every snapshot of a run, which meets the same reals."""
        digest = hashlib.sha256()
        for features in (self.stand_in, self.reference):
            digest.update(repr((features.dtype.str, features.shape)).encode())
            digest.update(np.ascontiguousarray(features).tobytes())
        return digest.hexdigest()


# Floor values by metric and FloorSets.digest(): a run's FID snapshots compare the same reals each
# time, so their floor (seconds at 2048 reals on a CPU) is computed once per process.
_FLOOR_VALUES: dict[tuple[str, str], Any] = {}


def floor_value(name: str, floor: FloorSets, compute: Callable[[FloorSets], Value]) -> Value:
    """``compute(floor)``, or the value it gave for the same metric and features earlier."""
    key = (name, floor.digest())
    if key not in _FLOOR_VALUES:
        _FLOOR_VALUES[key] = compute(floor)
    return _FLOOR_VALUES[key]


def floor_sets(context: EvaluationContext, other_split_embedded: bool) -> FloorSets | None:
    """The floor's two sets of real features; None when the reals cannot make two sets of 2.

    ``other_split_embedded``: whether the evaluation embeds the other split's reals anyway.
    """
    real = context.real()
    pool = RealPool(context.options.real_pool)
    other = OTHER_SPLIT.get(pool) if context.dataset is not None and other_split_embedded else None
    if other is not None and other_split_count(context, other) >= max(2, (len(real) + 1) // 2):
        stand_in = fixed_choice(context.real(other).features, len(context.fake_features))
        return FloorSets(stand_in, real.features, f"{other.value} vs {pool.value}")
    if len(real) < 4:
        log.warning("the real-vs-real floor needs at least 4 real images, got %d; left out", len(real))
        return None
    shuffled = fixed_choice(real.features, len(real))
    half = len(real) // 2
    name = pool.value if context.dataset is not None else "real"
    return FloorSets(shuffled[:half], shuffled[half : 2 * half], f"{name} halves")


def other_split_count(context: EvaluationContext, other: RealPool) -> int:
    """How many reals of the other split an evaluation would compare: up to ``eval.max_real``."""
    return min(pool_size(context.dataset, other), context.options.max_real)


def fixed_choice(features: np.ndarray, count: int) -> np.ndarray:
    """``count`` rows (at most all) in a fixed random order, the same in every run."""
    order = torch.randperm(len(features), generator=torch.Generator().manual_seed(REAL_SELECTION_SEED))
    return features[order[:count].numpy()]


def ratio_to_floor(score: float, floor: float | None) -> float | None:
    """``score / floor``: about 1 where the fakes are as near the reals as other reals are."""
    return None if floor is None or floor <= 0 else score / floor
