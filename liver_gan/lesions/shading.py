"""A lesion's Hounsfield units from its depth: soft edge, optional enhancing rim and necrotic core."""

from __future__ import annotations

import numpy as np


def shade_lesion(
    hu: np.ndarray,
    depth: np.ndarray,
    target_hu: float | np.ndarray,
    edge_mm: float,
    rim_hu: float | None = None,
    rim_mm: float = 1.5,
    core_drop_hu: float | None = None,
    core_depth_mm: float = 0.0,
    edge_start: float = 0.0,
) -> np.ndarray:
    """The HU inside a lesion: ``hu`` (the tissue there) fades to ``target_hu`` over ``edge_mm``
    of ``depth`` (a smoothstep, the soft edge of a real lesion), from the fraction ``edge_start``
    of the way at the surface; a rim ``rim_hu`` brighter peaks ``rim_mm`` deep; a core deeper than
    ``core_depth_mm`` is ``core_drop_hu`` darker."""
    fade = np.clip(edge_start + depth / edge_mm, 0.0, 1.0)
    fade = fade * fade * (3 - 2 * fade)
    value = hu + (target_hu - hu) * fade
    if rim_hu is not None:
        value += rim_hu * np.exp(-(((depth - rim_mm) / rim_mm) ** 2))
    if core_drop_hu is not None:
        value -= core_drop_hu * (depth > core_depth_mm)
    return value
