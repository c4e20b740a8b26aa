"""The matmul-only limit of one MLP GAN step: the GEMMs a step cannot avoid, and nothing else.

For every ``nn.Linear`` (in -> out) at batch B a step needs some of three GEMMs:
forward ``X[B,in] @ W^T``, input gradient ``dY[B,out] @ W`` and weight gradient ``dY^T @ X``.
One GAN step (BCE, fake reused for the G step) needs:

- D step: G forward; D forward on the real and the fake batch joined into one batch of 2B, as
  liver-gan's losses.py runs a D without BatchNorm; D backward of it, with weight gradients
  everywhere and input gradients everywhere but the first layer;
- G step: D forward on the fake batch; D backward with input gradients only (D is not being
  updated); G backward with weight gradients everywhere and input gradients but the first layer.

They are timed as ``torch.mm(..., out=...)`` on preallocated tensors, transposes as views (as
autograd passes them to BLAS).  Biases, activations, the loss, autograd bookkeeping and the
optimizer are left out, so no real loop can reach this rate; it bounds what tuning can win.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Gemm:
    """``left[m, k] @ right[k, n]``; ``transpose_left`` stores ``left`` as [k, m] and passes a view."""

    m: int
    k: int
    n: int
    transpose_left: bool = False

    @property
    def flops(self) -> int:
        return 2 * self.m * self.k * self.n


def linear_shapes(module: nn.Module) -> list[tuple[int, int]]:
    """(in_features, out_features) of every Linear layer, in the order the forward pass meets them."""
    return [(layer.in_features, layer.out_features) for layer in module.modules() if isinstance(layer, nn.Linear)]


def forward_gemms(layers: list[tuple[int, int]], batch: int) -> list[Gemm]:
    return [Gemm(batch, fan_in, fan_out) for fan_in, fan_out in layers]


def backward_gemms(layers: list[tuple[int, int]], batch: int, weight_grads: bool, first_input_grad: bool) -> list[Gemm]:
    gemms: list[Gemm] = []
    for index, (fan_in, fan_out) in reversed(list(enumerate(layers))):
        if weight_grads:
            gemms.append(Gemm(fan_out, batch, fan_in, transpose_left=True))
        if index > 0 or first_input_grad:
            gemms.append(Gemm(batch, fan_out, fan_in))
    return gemms


def gan_step_gemms(generator: nn.Module, discriminator: nn.Module, batch: int) -> list[Gemm]:
    """The GEMMs of one BCE GAN step with the fake batch reused for the G step (see module doc)."""
    g_layers = linear_shapes(generator)
    d_layers = linear_shapes(discriminator)
    d_step = (
        forward_gemms(g_layers, batch)
        + forward_gemms(d_layers, 2 * batch)
        + backward_gemms(d_layers, 2 * batch, weight_grads=True, first_input_grad=False)
    )
    g_step = (
        forward_gemms(d_layers, batch)
        + backward_gemms(d_layers, batch, weight_grads=False, first_input_grad=True)
        + backward_gemms(g_layers, batch, weight_grads=True, first_input_grad=False)
    )
    return d_step + g_step


def gemm_runner(gemms: list[Gemm]) -> Callable[[], None]:
    """A closure running every GEMM once on preallocated operands (allocation stays out of the timing)."""
    operands = []
    for gemm in gemms:
        left = torch.randn(gemm.k, gemm.m).t() if gemm.transpose_left else torch.randn(gemm.m, gemm.k)
        operands.append((left, torch.randn(gemm.k, gemm.n), torch.empty(gemm.m, gemm.n)))

    def run() -> None:
        for left, right, out in operands:
            torch.mm(left, right, out=out)

    return run


def step_gflop(gemms: list[Gemm]) -> float:
    return sum(gemm.flops for gemm in gemms) / 1e9
