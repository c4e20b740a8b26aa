"""A probe for peak memory that needs no allocator statistics: the largest tensor any torch call creates."""

from __future__ import annotations

from typing import Any, Iterator

import torch
from torch.overrides import TorchFunctionMode


def _tensors(value: Any) -> Iterator[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)


class LargestAllocation(TorchFunctionMode):
    """Within ``with LargestAllocation() as probe:``, ``probe.largest`` is the size in bytes of the
    largest new storage a torch function or tensor method returned (views of an input do not count)."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204 (torch's protocol)
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        inputs = {tensor.untyped_storage().data_ptr() for tensor in _tensors((args, kwargs))}
        for tensor in _tensors(result):
            storage = tensor.untyped_storage()
            if storage.data_ptr() not in inputs:
                self.largest = max(self.largest, storage.nbytes())
        return result
