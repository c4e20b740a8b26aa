"""The part of the :class:`~liver_gan.training.family.Family` protocol that a family with no state of
its own shares: nothing adapted while it trains (no ADA's p) and nothing beyond its networks and
optimizers for a resume.  The diffusion model and the lesion inpainter are such families; a GAN
(``gan_step.py``) keeps its augmentation's p and its D step count."""

from __future__ import annotations

from typing import Any

from torch import Tensor


class Stateless:
    """``monitored``, ``state_dict`` and ``load_state_dict`` of a family that has nothing to report or restore."""

    def monitored(self) -> dict[str, Tensor]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Nothing beyond the networks and optimizers, which the checkpoint holds under their own keys."""
