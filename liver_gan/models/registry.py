"""Building a model family's networks, and only from a registered builder.

Each family is built through ``hydra.utils.instantiate(cfg.model, resolution=R, num_classes=C)``, and
only from a registered builder: the ``_target_`` of a model schema (a subclass of
:class:`liver_gan.models.schema.BaseModelConfig`).  A family joins by adding its schema; a
checkpoint's config can name nothing else (issue 11).

The diffusion builder returns one ``DiffusionModel``, which samples like a generator (see
ddpm.py), built by :func:`build_diffusion`.  Every GAN builder (a subclass of
:class:`liver_gan.models.schema.ModelConfig`) returns ``(generator, discriminator)``, built by
:func:`build_gan`:

- ``generator(z[N, latent_dim], labels[N] | None) -> images[N, K, R, R]`` in [-1, 1];
- ``discriminator(images[N, K, R, R], labels[N] | None) -> logits[N]`` (no sigmoid: the losses
  work on logits, and a probability is only ever shown in logs).

The inpainter's builder (:class:`liver_gan.models.schema.InpaintConfig`) also returns
``(generator, discriminator)``, built by :func:`build_inpainting`; its generator's first argument is
a crop with a hole, not noise (inpaint.py).

``C`` is 2 for a conditional model and 0 otherwise; labels are given exactly when ``C > 0``.
``K`` (``image_channels``) is 1, the CT, or with ``dataset.masks=true`` the CT and its mask
channels (liver_gan/data/masks.py): every family generates image and label map jointly, and the
count comes from the dataset config here, in one place.
"""

from __future__ import annotations

from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import nn

from liver_gan.data.labels import CLASS_NAMES
from liver_gan.data.masks import image_channels
from liver_gan.errors import LiverGanError
from liver_gan.memory import require_fits
from liver_gan.models.memory import weight_bytes
from liver_gan.models.schema import BaseModelConfig, DDPMConfig, InpaintConfig, ModelConfig, require_registered_builder


def is_gan(cfg: DictConfig) -> bool:
    """Whether ``cfg.model`` builds a GAN (else a diffusion model); only registered builders are accepted."""
    return _builds(cfg, ModelConfig)


def is_inpainter(cfg: DictConfig) -> bool:
    """Whether ``cfg.model`` builds the lesion inpainter (``model=inpaint``)."""
    return _builds(cfg, InpaintConfig)


def build_gan(cfg: DictConfig) -> tuple[nn.Module, nn.Module]:
    """The ``(generator, discriminator)`` of ``cfg.model`` at ``cfg.dataset.resolution``."""
    return _build_family(cfg, ModelConfig, "builds a diffusion model, not a GAN; use build_diffusion")


def build_diffusion(cfg: DictConfig) -> nn.Module:
    """The ``DiffusionModel`` of ``cfg.model`` at ``cfg.dataset.resolution``."""
    return _build_family(cfg, DDPMConfig, "builds a GAN, not a diffusion model; use build_gan")


def build_inpainting(cfg: DictConfig) -> tuple[nn.Module, nn.Module]:
    """The inpainter's ``(generator, discriminator)`` of ``cfg.model`` at ``cfg.dataset.resolution``."""
    return _build_family(cfg, InpaintConfig, "is not the inpainter (model=inpaint)")


def build_generator(cfg: DictConfig) -> nn.Module:
    """The network that draws a run's images: a GAN's generator, the diffusion model itself, or the
    inpainter's generator."""
    if is_inpainter(cfg):
        return build_inpainting(cfg)[0]
    return build_gan(cfg)[0] if is_gan(cfg) else build_diffusion(cfg)


def _builds(cfg: DictConfig, family: type[BaseModelConfig]) -> bool:
    return issubclass(require_registered_builder(cfg.model._target_, "the config"), family)


def _build_family(cfg: DictConfig, family: type[BaseModelConfig], refusal: str) -> Any:
    """``cfg.model``'s networks, once its builder is known to be one of ``family``'s; else ``refusal``."""
    if not _builds(cfg, family):
        raise LiverGanError(f"model._target_={cfg.model._target_} {refusal}")
    return _refusing_what_does_not_fit(cfg)


def _call_builder(cfg: DictConfig) -> Any:
    """``cfg.model``'s builder called with the size and class count.

    A builder's own :class:`LiverGanError` (a bad size for this family) reaches the user as it
    is, not wrapped in Hydra's "Error in call to target".
    """
    num_classes = len(CLASS_NAMES) if cfg.model.conditional else 0
    try:
        return instantiate(
            cfg.model,
            resolution=cfg.dataset.resolution,
            num_classes=num_classes,
            image_channels=image_channels(cfg.dataset.masks),
        )
    except InstantiationException as error:
        if isinstance(error.__cause__, LiverGanError):
            raise error.__cause__ from None
        raise


def _refusing_what_does_not_fit(cfg: DictConfig) -> Any:
    """Build the networks, once their weights are known to fit in this machine's memory.

    The weights are counted first on PyTorch's ``meta`` device (:mod:`liver_gan.models.memory`, a
    few hundredths of a second), so a model larger than the memory available now
    (``model.generator_widths=[2**40]``, ``dataset.resolution=100000``, or merely a few times too
    wide) is refused in one line with its size, rather than granted lazily and killed later.  The
    allocator's own refusal is caught too, for memory that went between the estimate and the build.
    """
    family = cfg.model._target_.rsplit(".", 2)[-2]  # the family's module: liver_gan.models.<family>.build_...
    what = f"the {family} model at dataset.resolution={cfg.dataset.resolution}"
    fix = "use smaller model widths or dataset.resolution"
    require_fits(weight_bytes(lambda: _call_builder(cfg)), f"{what}, its weights", fix)
    try:
        return _call_builder(cfg)
    except InstantiationException as error:
        cause = error.__cause__
        if not isinstance(cause, MemoryError) and not (isinstance(cause, RuntimeError) and "allocate memory" in str(cause)):
            raise
        raise LiverGanError(f"{what} does not fit in this machine's memory; {fix}") from None
