"""Differentiable augmentation of D's inputs, chosen by the ``augment`` group.

- ``none`` (:class:`Augment` without ops): D sees the images as they are.
- ``diffaugment`` (Zhao et al. 2020, :class:`Augment`): every op on every image.  Real and fake
  images both pass through the same random pipeline before D, and G learns through it, so D
  can neither memorise the few real images nor tell the augmentation apart from the data.
- ``ada`` (Karras et al. 2020a, :class:`AdaptiveAugment`): each op is applied to an image with
  probability p, raised while D overfits, which ADA measures as r_t = E[sign(D(real))] above
  ``augment.target``, and lowered otherwise.  A small p rarely leaks augmented-looking images
  into G, and p only grows as far as D needs it.

The ops suit CT slices in [-1, 1]: integer translations that shift in air (-1, what the HU
window makes of air), cutout (a square set to 0, the middle of the window), intensity jitter
(brightness is a shift of the window level, contrast a change of its width) and, off by default
because it moves the liver to the patient's other side, a left-right flip.  No colour ops.
Slices with mask channels (``dataset.masks=true``) move with their masks, but intensity jitter
changes the CT channel only: the masks are labels, not intensities.

Every op is linear in the image, built from padding, indexing, ``where`` and products, so that
R1's double backward passes through it (``grid_sample`` has no second derivative) and it is
deterministic on the CPU.

Randomness: every number is drawn on the images' device, from ``generator`` when one is given
(it must live on that device; its state is part of :meth:`Augment.state_dict`), else from
torch's global generator for that device, which training checkpoints save and restore
(``liver_gan.training.seeding``), so a resumed run draws the same augmentations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor

from liver_gan.augment_schema import AugmentOp
from liver_gan.errors import LiverGanError

AIR = -1.0  # what translation shifts in: air lies below every HU window
CUTOUT_FILL = 0.0  # the window's middle, the value DiffAugment's cutout leaves


@dataclass(frozen=True)
class AugmentParams:
    """One draw of every op's parameters, one row per image; an op not applied to an image has
    its identity value there (shift 0, no flip, nothing cut out, brightness 0, contrast 1)."""

    brightness: Tensor  # (N,) added
    contrast: Tensor  # (N,) factor around each image's mean
    flip: Tensor  # (N,) bool
    shift: Tensor  # (N, 2) int64: rows down, columns right
    keep: Tensor  # (N, 1, H, W) bool: False inside the cut-out square


def check_fraction(option: str, value: float, high: float, meaning: str) -> None:
    if not 0 <= value <= high:
        raise LiverGanError(f"augment.{option}={value} must be in [0, {high}]: it is {meaning}")


class Augment:
    """A fixed pipeline: each op in ``ops`` applied to each image with probability ``p`` (1 for DiffAugment).

    ``augment(images)`` draws new parameters per image; ``augment.pair(real, fake)`` draws them
    once and applies the same ones to both batches (image i of each gets the same shift, cutout
    and jitter), so that D's real and fake inputs differ only in what the images hold.
    """

    def __init__(
        self,
        ops: Sequence[AugmentOp | str] = (),
        translation: float = 0.125,
        cutout: float = 0.5,
        brightness: float = 0.25,
        contrast: float = 0.25,
        generator: torch.Generator | None = None,
        p: float = 1.0,
    ) -> None:
        check_fraction("translation", translation, 0.5, "the largest shift as a fraction of the image side")
        check_fraction("cutout", cutout, 1.0, "the cut-out square's side as a fraction of the image side")
        check_fraction("brightness", brightness, 1.0, "the largest shift of [-1, 1] intensities")
        check_fraction("contrast", contrast, 0.99, "the largest relative change of the contrast")
        check_fraction("p", p, 1.0, "a probability")
        self.ops = frozenset(AugmentOp(op) for op in ops)
        self.translation = translation
        self.cutout = cutout
        self.brightness = brightness
        self.contrast = contrast
        self.generator = generator
        self.p = torch.tensor(float(p))

    def __call__(self, images: Tensor) -> Tensor:
        # Without ops nothing is drawn, so that augment=none leaves every random stream as it was.
        if not self.ops:
            return images
        return self.apply(images, self.sample(images))

    def pair(self, real: Tensor, fake: Tensor) -> tuple[Tensor, Tensor]:
        """Real and fake batches of the same shape, augmented with one draw of parameters."""
        if real.shape != fake.shape:
            raise ValueError(f"real {tuple(real.shape)} and fake {tuple(fake.shape)} batches differ in shape")
        if not self.ops:
            return real, fake
        params = self.sample(real)
        return self.apply(real, params), self.apply(fake, params)

    def sample(self, images: Tensor) -> AugmentParams:
        """Parameters for a batch shaped like ``images``: draws for the ops that are on, in the order applied."""
        batch, _, height, width = images.shape
        device = images.device
        brightness = torch.zeros(batch, device=device)
        contrast = torch.ones(batch, device=device)
        flip = torch.zeros(batch, dtype=torch.bool, device=device)
        shift = torch.zeros(batch, 2, dtype=torch.long, device=device)
        keep = torch.ones(batch, 1, height, width, dtype=torch.bool, device=device)
        if AugmentOp.intensity in self.ops:
            brightness = self._uniform(batch, device, self.brightness) * self._applied(batch, device)
            contrast = 1 + self._uniform(batch, device, self.contrast) * self._applied(batch, device)
        if AugmentOp.flip in self.ops:
            flip = (self._rand(batch, device) < 0.5) & self._applied(batch, device)
        if AugmentOp.translation in self.ops:
            limits = self._max_shift(height, width)
            shift = torch.stack([self._randint(-limit, limit, batch, device) for limit in limits], dim=1)
            shift = shift * self._applied(batch, device)[:, None]
        if AugmentOp.cutout in self.ops:
            keep = self._cutout_keep(batch, height, width, device)
        return AugmentParams(brightness, contrast, flip, shift, keep)

    def apply(self, images: Tensor, params: AugmentParams) -> Tensor:
        """The ops in their fixed order: intensity, flip, translation, cutout."""
        dtype = images.dtype
        if AugmentOp.intensity in self.ops:
            # (x - mean) * contrast + mean + brightness, written so that an image left alone
            # (contrast 1, brightness 0) comes out bit-identical.
            ct, masks = images[:, :1], images[:, 1:]
            mean = ct.mean(dim=(1, 2, 3), keepdim=True)
            change = params.contrast.to(dtype)[:, None, None, None] - 1
            ct = ct + ((ct - mean) * change + params.brightness.to(dtype)[:, None, None, None])
            images = torch.cat([ct, masks], dim=1)
        if AugmentOp.flip in self.ops:
            images = torch.where(params.flip[:, None, None, None], images.flip(3), images)
        if AugmentOp.translation in self.ops:
            images = self._translate(images, params.shift)
        if AugmentOp.cutout in self.ops:
            images = torch.where(params.keep, images, CUTOUT_FILL)
        return images

    def observe(self, real_logits: Tensor) -> None:
        """D's logits on the (augmented) real batch; only ``ada`` uses them."""

    def state_dict(self) -> dict[str, Any]:
        return {} if self.generator is None else {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.generator is not None:
            self.generator.set_state(state["generator"])

    def _translate(self, images: Tensor, shift: Tensor) -> Tensor:
        """Shift image i by ``shift[i]`` whole pixels, shifting air in: pad, then gather by index."""
        batch, channels, height, width = images.shape
        pad_rows, pad_columns = self._max_shift(height, width)
        padded = F.pad(images, (pad_columns, pad_columns, pad_rows, pad_rows), value=AIR)
        device = images.device
        # Output pixel (y, x) reads input pixel (y - dy, x - dx), at (y - dy + pad, x - dx + pad) in the padding.
        rows = torch.arange(height, device=device) + pad_rows - shift[:, :1]
        columns = torch.arange(width, device=device) + pad_columns - shift[:, 1:]
        return padded[
            torch.arange(batch, device=device)[:, None, None, None],
            torch.arange(channels, device=device)[None, :, None, None],
            rows[:, None, :, None],
            columns[:, None, None, :],
        ]

    def _max_shift(self, height: int, width: int) -> tuple[int, int]:
        return round(self.translation * height), round(self.translation * width)

    def _cutout_keep(self, batch: int, height: int, width: int, device: torch.device) -> Tensor:
        """A square of side ``cutout`` x the image side, centred anywhere in the image (clipped at its edges)."""
        inside = []
        for length in (height, width):
            side = round(self.cutout * length)
            start = self._randint(0, length - 1, batch, device) - side // 2
            positions = torch.arange(length, device=device)
            inside.append((positions >= start[:, None]) & (positions < start[:, None] + side))
        cut = inside[0][:, :, None] & inside[1][:, None, :] & self._applied(batch, device)[:, None, None]
        return ~cut[:, None]

    def _applied(self, batch: int, device: torch.device) -> Tensor:
        """Which images get an op: each with probability p."""
        return self._rand(batch, device) < self.p.to(device)

    def _rand(self, batch: int, device: torch.device) -> Tensor:
        return torch.rand(batch, device=device, generator=self.generator)

    def _uniform(self, batch: int, device: torch.device, limit: float) -> Tensor:
        return (self._rand(batch, device) * 2 - 1) * limit

    def _randint(self, low: int, high: int, batch: int, device: torch.device) -> Tensor:
        """Integers in [low, high], both included."""
        return torch.randint(low, high + 1, (batch,), device=device, generator=self.generator)


class AdaptiveAugment(Augment):
    """ADA: p starts at ``p`` (0) and moves by ``sign(r_t - target) * images / (ada_kimg * 1000)``
    every ``adjust_every`` observed D steps, so that it can go from 0 to 1 in ``ada_kimg``
    thousand real images.  r_t = E[sign(D(real))] over those steps: near 1 when D is sure of
    every real image (overfitting), near 0 when it cannot tell.

    ``p`` and ``overfitting`` (the last r_t) are 0-d tensors on D's device, updated without a
    host sync; read them for logging.  :meth:`state_dict` holds all that a resume needs.
    """

    # After ops, by name only (as Hydra passes them): the order is not Augment's.  The ops'
    # strengths and the generator are Augment's, with its defaults, written once there.
    def __init__(
        self, ops: Sequence[AugmentOp | str] = (), *, target: float = 0.6, ada_kimg: float = 500.0,
        adjust_every: int = 4, p: float = 0.0, **op_options: float | torch.Generator | None,
    ) -> None:
        super().__init__(ops, p=p, **op_options)
        if not 0 <= target < 1:
            raise LiverGanError(f"augment.target={target} must be in [0, 1): it is the wanted E[sign(D(real))]")
        if ada_kimg <= 0:
            raise LiverGanError(f"augment.ada_kimg={ada_kimg} must be positive: the paper uses 500")
        if adjust_every < 1:
            raise LiverGanError(f"augment.adjust_every={adjust_every} must be at least 1: the paper uses 4")
        self.target = target
        self.ada_kimg = ada_kimg
        self.adjust_every = adjust_every
        self.overfitting = torch.tensor(0.0)
        self._sign_sum = torch.tensor(0.0)
        self._images = 0
        self._steps = 0

    def observe(self, real_logits: Tensor) -> None:
        device = real_logits.device
        self._sign_sum = self._sign_sum.to(device) + real_logits.detach().float().sign().sum()
        self._images += real_logits.numel()
        self._steps += 1
        if self._steps < self.adjust_every:
            return
        sign_sum, images = self._sign_sum, float(self._images)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            # A run of several ranks: r_t over every rank's real images, so that p stays equal on all
            # (stylegan2-ada sums these statistics over its GPUs too).
            totals = torch.stack([sign_sum, torch.tensor(images, device=device)])
            dist.all_reduce(totals)
            sign_sum, images = totals[0], totals[1]  # stays on the device: no host sync
        self.overfitting = sign_sum / images
        step = images / (self.ada_kimg * 1000)
        self.p = (self.p.to(device) + torch.sign(self.overfitting - self.target) * step).clamp(0, 1)
        self._sign_sum = torch.zeros_like(self._sign_sum)
        self._images = 0
        self._steps = 0

    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "p": self.p.cpu(),
            "overfitting": self.overfitting.cpu(),
            "sign_sum": self._sign_sum.cpu(),
            "images": self._images,
            "steps": self._steps,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.p = state["p"].clone()
        self.overfitting = state["overfitting"].clone()
        self._sign_sum = state["sign_sum"].clone()
        self._images = state["images"]
        self._steps = state["steps"]
