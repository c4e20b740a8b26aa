"""Class conditioning shared by every GAN family.

The generator sees the class through a learned label embedding concatenated to z.  The
discriminator sees it either by projection (Miyato & Koyama 2018: the logit gains the inner
product of a learned class embedding with D's features) or by concatenation (one-hot labels
appended to D's input: extra input features for the MLP, constant label planes for a CNN).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from liver_gan.models.schema import Conditioning

# Small next to z (100 by default) so the class steers the image without drowning the noise;
# nn.Embedding's N(0, 1) initialisation puts it on the same scale as z ~ N(0, I).
LABEL_EMBEDDING_DIM = 16


def model_classes(conditional: bool, num_classes: int) -> int:
    """The number of classes a model conditions on: ``num_classes`` if conditional, else 0."""
    if conditional and num_classes < 2:
        raise ValueError(f"a conditional model needs num_classes >= 2, got {num_classes}")
    if not conditional and num_classes != 0:
        raise ValueError(f"an unconditional model takes num_classes=0, got {num_classes}")
    return num_classes


def check_labels(num_classes: int, labels: Tensor | None, batch_size: int) -> None:
    """Labels must be given, one per sample, exactly when the model is conditional."""
    if num_classes == 0:
        if labels is not None:
            raise ValueError("labels were given to an unconditional model (model.conditional=false)")
        return
    if labels is None:
        raise ValueError("a conditional model (model.conditional=true) needs one label per sample")
    if labels.shape != (batch_size,):
        raise ValueError(f"labels must have shape ({batch_size},), got {tuple(labels.shape)}")


class LabelEmbedding(nn.Module):
    """Generator input: z, with a learned embedding of the class label appended when conditional."""

    def __init__(self, latent_dim: int, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.embedding = nn.Embedding(num_classes, LABEL_EMBEDDING_DIM) if num_classes else None
        self.out_features = latent_dim + (LABEL_EMBEDDING_DIM if num_classes else 0)

    def forward(self, z: Tensor, labels: Tensor | None) -> Tensor:
        check_labels(self.num_classes, labels, z.shape[0])
        if self.embedding is None:
            return z
        return torch.cat((z, self.embedding(labels)), dim=1)


class LabelProjection(nn.Module):
    """The class term of a projection discriminator: ``<embed(y), features>`` per sample."""

    def __init__(self, num_classes: int, feature_dim: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(num_classes, feature_dim)
        # Initialised like a Linear(feature_dim, 1) weight, so that at the start the class term
        # is on the scale of the unconditional logit instead of N(0, 1) times every feature.
        bound = 1.0 / math.sqrt(feature_dim)
        nn.init.uniform_(self.embedding.weight, -bound, bound)

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        return (self.embedding(labels) * features).sum(dim=1)


def concat_one_hot(inputs: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """Append one-hot labels to D's input: as features of (N, F), or as constant planes of (N, C, H, W)."""
    one_hot = F.one_hot(labels, num_classes).to(inputs.dtype)
    if inputs.dim() == 4:
        one_hot = one_hot[:, :, None, None].expand(-1, -1, *inputs.shape[2:])
    return torch.cat((inputs, one_hot), dim=1)


class DiscriminatorConditioning(nn.Module):
    """Where D sees the class: appended to its input (concat) or projected onto its features.

    A family's discriminator passes its input through :meth:`inputs`, builds its first layer
    with ``extra_inputs`` more features or channels, and passes its unconditional logit and its
    feature vector through :meth:`logits`.  Unconditional (``num_classes=0``) it changes nothing.
    """

    def __init__(self, num_classes: int, conditioning: Conditioning, feature_dim: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        concat = num_classes > 0 and Conditioning(conditioning) is Conditioning.concat
        self.extra_inputs = num_classes if concat else 0
        self.projection = LabelProjection(num_classes, feature_dim) if num_classes and not concat else None

    def inputs(self, x: Tensor, labels: Tensor | None) -> Tensor:
        check_labels(self.num_classes, labels, x.shape[0])
        return concat_one_hot(x, labels, self.num_classes) if self.extra_inputs else x

    def logits(self, logits: Tensor, features: Tensor, labels: Tensor | None) -> Tensor:
        return logits if self.projection is None else logits + self.projection(features, labels)
