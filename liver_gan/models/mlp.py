"""The thesis's MLP GAN (Table 2), with layer widths from the config and sizes from the resolution.

At 64x64 with the default widths it is exactly Table 2:

- G: Linear 100->256->512->1024->4096 with ReLU, ReLU, ReLU, Tanh, reshaped to 1x64x64;
- D: Flatten, Linear 4096->512->256->1 with LeakyReLU(0.2) between layers.

Table 2's final Sigmoid is folded into the BCE-with-logits loss, so D returns logits.  PyTorch's
default initialisation is kept, as in the thesis.
"""

from __future__ import annotations

from typing import Sequence

from torch import Tensor, nn

from liver_gan.models.common import LEAKY_SLOPE, ImageDiscriminator, ImageGenerator, require_positive
from liver_gan.models.conditioning import DiscriminatorConditioning, LabelEmbedding, model_classes
from liver_gan.models.schema import Conditioning


class MLPGenerator(ImageGenerator):
    """z (plus a label embedding when conditional) -> Linear+ReLU stages -> Linear+Tanh -> 1xRxR."""

    def __init__(
        self, latent_dim: int, widths: Sequence[int], resolution: int, num_classes: int, image_channels: int = 1
    ) -> None:
        super().__init__(latent_dim, num_classes, resolution, image_channels)
        self.label_input = LabelEmbedding(latent_dim, num_classes)
        sizes = [self.label_input.out_features, *widths]
        layers: list[nn.Module] = []
        for in_features, out_features in zip(sizes, sizes[1:]):
            layers += [nn.Linear(in_features, out_features), nn.ReLU()]
        layers += [nn.Linear(sizes[-1], image_channels * resolution * resolution), nn.Tanh()]
        self.layers = nn.Sequential(*layers)

    def forward(self, z: Tensor, labels: Tensor | None = None, truncation_psi: float = 1.0) -> Tensor:
        """``truncation_psi`` < 1 scales z toward 0, the prior's mean: nearer-average images, less variety."""
        flat = self.layers(self.label_input(z * truncation_psi, labels))
        return flat.view(-1, self.image_channels, self.resolution, self.resolution)


class MLPDiscriminator(ImageDiscriminator):
    """Flatten -> Linear+LeakyReLU stages -> Linear to one logit per image."""

    def __init__(
        self, widths: Sequence[int], resolution: int, num_classes: int, conditioning: Conditioning, image_channels: int = 1
    ) -> None:
        super().__init__(num_classes, resolution)
        sizes = [image_channels * resolution * resolution, *widths]
        # The projection variant projects onto the last hidden layer, the features the logit reads.
        label_conditioning = DiscriminatorConditioning(num_classes, conditioning, feature_dim=sizes[-1])
        sizes[0] += label_conditioning.extra_inputs
        layers: list[nn.Module] = []
        for in_features, out_features in zip(sizes, sizes[1:]):
            layers += [nn.Linear(in_features, out_features), nn.LeakyReLU(LEAKY_SLOPE)]
        self.flatten = nn.Flatten()
        self.features = nn.Sequential(*layers)
        self.output = nn.Linear(sizes[-1], 1)
        self.label_conditioning = label_conditioning

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        features = self.features(self.label_conditioning.inputs(self.flatten(x), labels))
        return self.label_conditioning.logits(self.output(features).squeeze(1), features, labels)


def build_mlp_gan(
    latent_dim: int,
    conditional: bool,
    generator_widths: Sequence[int],
    discriminator_widths: Sequence[int],
    resolution: int,
    num_classes: int,
    conditioning: Conditioning = Conditioning.projection,
    image_channels: int = 1,
) -> tuple[MLPGenerator, MLPDiscriminator]:
    """The (generator, discriminator) pair for ``model=mlp`` at ``resolution`` x ``resolution``."""
    require_positive("model.latent_dim", [latent_dim])
    require_positive("model.generator_widths", generator_widths)
    require_positive("model.discriminator_widths", discriminator_widths)
    require_positive("dataset.resolution", [resolution])
    classes = model_classes(conditional, num_classes)
    return (
        MLPGenerator(latent_dim, list(generator_widths), resolution, classes, image_channels),
        MLPDiscriminator(list(discriminator_widths), resolution, classes, conditioning, image_channels),
    )
