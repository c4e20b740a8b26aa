"""The training recipe every downstream network shares (the classifier, the segmenter): Adam for
a fixed number of epochs over shuffled batches, its last state kept.

No early stopping, so the real validation slices never choose anything.  One ``torch.Generator``
orders the batches and draws the flips, so ``seed`` fixes both.
"""

from __future__ import annotations

from typing import Callable

import torch
from omegaconf import DictConfig
from torch import Tensor, nn

# (images, targets, rng) -> the batch as the network trains on it (e.g. randomly flipped).
BatchAugment = Callable[[Tensor, Tensor, torch.Generator], tuple[Tensor, Tensor]]


def train_supervised(
    model: nn.Module,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    images: Tensor,
    targets: Tensor,
    cfg: DictConfig,
    rng: torch.Generator,
    augment: BatchAugment,
) -> nn.Module:
    """``model`` trained on (images, targets), both on the model's device, by ``cfg``'s ``lr``,
    ``weight_decay``, ``epochs`` and ``batch_size``; returned in eval mode."""
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    model.train()
    for _ in range(cfg.epochs):
        for batch in torch.randperm(len(images), generator=rng).split(cfg.batch_size):
            batch = batch.to(images.device)
            x, y = augment(images[batch], targets[batch], rng)
            loss = loss_fn(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return model.eval()
