"""Seeds and random state: one ``seed`` makes a run reproducible, and a checkpoint carries every
random stream so that a resumed run draws exactly the numbers the interrupted one would have."""

from __future__ import annotations

import logging
import os
import random
from typing import Any

import numpy as np
import torch

from liver_gan.device import CUBLAS_WORKSPACE_CONFIG, cudnn_benchmark, reserve_cublas_workspace

log = logging.getLogger(__name__)


def seed_everything(seed: int, deterministic: bool) -> None:
    """Seed Python, NumPy and torch (every CUDA device too); optionally force deterministic kernels.

    Deterministic mode trades speed for bit-identical results: cuDNN autotuning is off, and
    cuBLAS needs its fixed workspace, which the CLI entries set at import
    (:func:`liver_gan.device.reserve_cublas_workspace`); set here, after CUDA may have started, it
    may come too late, which is said in one warning.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic and "CUBLAS_WORKSPACE_CONFIG" not in os.environ:
        if torch.cuda.is_initialized():
            log.warning(
                "trainer.deterministic=true but CUDA started before CUBLAS_WORKSPACE_CONFIG was set, so cuBLAS "
                "matmuls may not be deterministic: export CUBLAS_WORKSPACE_CONFIG=%s before starting Python",
                CUBLAS_WORKSPACE_CONFIG,
            )
        reserve_cublas_workspace()
    torch.use_deterministic_algorithms(deterministic)
    torch.backends.cudnn.benchmark = cudnn_benchmark(deterministic)


def rng_state(device: torch.device) -> dict[str, Any]:
    """The global random streams, in a form ``torch.load(weights_only=True)`` accepts."""
    numpy_state = np.random.get_state(legacy=False)
    return {
        "python": random.getstate(),
        "numpy": {
            "state": {"key": numpy_state["state"]["key"].tolist(), "pos": numpy_state["state"]["pos"]},
            "has_gauss": numpy_state["has_gauss"],
            "gauss": numpy_state["gauss"],
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if device.type == "cuda" else None,
    }


def restore_rng_state(state: dict[str, Any], device: torch.device) -> None:
    """Undo :func:`rng_state`: every global stream continues from where it was captured.

    The CUDA streams are restored only when training on CUDA again (a checkpoint may move).
    """
    random.setstate(state["python"])
    numpy_state = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": "MT19937",
            "state": {
                "key": np.asarray(numpy_state["state"]["key"], dtype=np.uint32),
                "pos": numpy_state["state"]["pos"],
            },
            "has_gauss": numpy_state["has_gauss"],
            "gauss": numpy_state["gauss"],
        }
    )
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and device.type == "cuda":
        restore_cuda_rng_states(state["cuda"])


def restore_cuda_rng_states(saved: list[torch.Tensor]) -> None:
    """Each visible GPU's stream from the state saved for the GPU at its index.

    The GPUs visible now may be fewer or more than at save time (another machine, another
    ``CUDA_VISIBLE_DEVICES``): the streams of GPUs that are gone are dropped and new GPUs keep
    their seeded stream, with a warning, since draws on them then differ from the interrupted run's.
    """
    visible = torch.cuda.device_count()
    for index, cuda_state in enumerate(saved[:visible]):
        torch.cuda.set_rng_state(cuda_state, index)
    if len(saved) != visible:
        log.warning(
            "the checkpoint holds the random state of %d GPU(s) but %d are visible: restored %d, so "
            "random draws on the GPU differ from the interrupted run's",
            len(saved),
            visible,
            min(len(saved), visible),
        )
