"""The memory a model's weights will take, measured before they are allocated.

The builder runs once on PyTorch's ``meta`` device, where a tensor has a shape and no storage, so
every family (its own layers, MONAI's, whatever a config sets) is counted by the code that builds
it, not by a second copy of each family's arithmetic.  Writing initial values into meta tensors
is skipped (:class:`SkipValueWrites`): those values do not exist, and PyTorch's meta version of
``normal_`` alone imports torch._dynamo, about 4 s on a first call; with the skip the estimate
costs 0.01-0.06 s per model preset on a shared 2-core CPU (``python benchmarks/model_memory.py``).
"""

from __future__ import annotations

import itertools
from typing import Any, Callable

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

# In-place ops that change a tensor's shape or its autograd flag, not just its values: never skipped.
SHAPE_CHANGING = {"resize_", "resize_as_", "set_", "requires_grad_", "unsqueeze_", "squeeze_", "transpose_", "t_"}


class SkipValueWrites(TorchFunctionMode):
    """Within a meta-device build, an in-place op that only writes values (``normal_``,
    ``kaiming_uniform_``, ``zero_``, ``fill_``, ...) into a meta tensor returns that tensor as is."""

    def __torch_function__(self, func: Callable[..., Any], types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name.endswith("_") and not name.startswith("__") and name not in SHAPE_CHANGING:
            target = next((value for value in (*args, *kwargs.values()) if isinstance(value, Tensor)), None)
            if target is not None and target.is_meta:
                return target
        return func(*args, **kwargs)


def weight_bytes(build: Callable[[], Any]) -> int:
    """Bytes of every parameter and buffer of the module (or tuple of modules) ``build`` returns,
    built on the meta device: nothing is allocated."""
    with torch.device("meta"), SkipValueWrites():
        built = build()
    modules = built if isinstance(built, tuple) else (built,)
    tensors = itertools.chain.from_iterable(
        itertools.chain(module.parameters(), module.buffers()) for module in modules if isinstance(module, nn.Module)
    )
    return sum(tensor.numel() * tensor.element_size() for tensor in tensors)
