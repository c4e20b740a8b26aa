"""StyleGAN2 (Karras et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN"), one channel.

Written from the paper in plain PyTorch, without custom CUDA ops:

- G's mapping network turns z (normalised to the unit sphere, with a learned label embedding
  appended when conditional) into a style w through ``mapping_layers`` fully connected layers
  whose learning rate is scaled by ``mapping_lr_multiplier`` (0.01 in the paper).
- G's synthesis network starts from a learned constant 4x4 input.  Every 3x3 convolution is
  modulated by an affine map of w and demodulated (the paper's weight demodulation, which
  replaces AdaIN), computed per sample as one grouped convolution; every convolution gets
  per-pixel noise scaled by a learned strength.  Each resolution has its own modulated 1x1
  "toRGB" layer, and the images are upsampled and summed (the paper's skip generator).
- D is residual: fromRGB once at full resolution, then per resolution two 3x3 convolutions and
  a 1x1 skip, both halving the size, summed and scaled by 1/sqrt(2); at 4x4 a minibatch standard
  deviation feature, a convolution and two fully connected layers.  Conditional, the logit gains
  the inner product of a class embedding with D's last features (projection, as for DCGAN).
- Every layer uses equalized learning rate: weights are drawn from N(0, 1) and scaled at run
  time by He's constant, so that Adam's per-weight step is the same across layers.

Up- and downsampling use the paper's [1, 3, 3, 1] filter: bilinear upsampling by two is exactly
that filter (with clamped edges), and downsampling convolves with it at stride 2.

Departures from the paper, for this code base: the output passes through tanh, because every
liver-gan generator returns images in [-1, 1] (the HU window's range; see ``liver_gan.models``);
sampling is truncation-free and without style mixing.  In eval mode the noise inputs are fixed
buffers drawn at construction, so that the generator is a function of (z, labels) and a seeded
sample grid repeats; in training mode fresh noise is drawn from the global torch RNG.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from liver_gan.errors import LiverGanError
from liver_gan.models.common import (
    LEAKY_SLOPE,
    ImageDiscriminator,
    ImageGenerator,
    check_power_of_two,
    require_positive,
)
from liver_gan.models.conditioning import DiscriminatorConditioning, LabelEmbedding, model_classes
from liver_gan.models.schema import Conditioning

# Leaky ReLU halves the variance of a zero-mean input (roughly); sqrt(2) restores it, as He's
# initialisation does, so that activations keep unit scale through the equalized layers.
ACTIVATION_GAIN = math.sqrt(2)
MIN_RESOLUTION = 8
EPSILON = 1e-8
# z drawn for the average w of the truncation trick: its estimate varies by about 1/sqrt(4096) of w's spread.
AVERAGE_STYLE_SAMPLES = 4096


def channels_at(size: int, channel_base: int, channel_max: int) -> int:
    """Feature channels at ``size`` x ``size``: ``channel_base / size``, capped at ``channel_max``.

    The paper's widths follow the same rule, so the network is widest near 4x4 and thins as the
    feature maps grow, keeping the cost per resolution roughly even.
    """
    return max(1, min(channel_base // size, channel_max))


def leaky_relu(x: Tensor) -> Tensor:
    return F.leaky_relu(x, LEAKY_SLOPE) * ACTIVATION_GAIN


def normalize_2nd_moment(x: Tensor) -> Tensor:
    """Scale each row to unit root-mean-square (z on the sphere of radius sqrt(dim))."""
    return x * (x.square().mean(dim=1, keepdim=True) + EPSILON).rsqrt()


def upsample(x: Tensor) -> Tensor:
    """Double the size with the [1, 3, 3, 1] filter (bilinear interpolation by two is that filter)."""
    return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)


class Downsample(nn.Module):
    """Halve the size: blur with the separable [1, 3, 3, 1] / 8 filter, one channel at a time, at stride 2.

    A fixed depthwise convolution rather than antialiased interpolation, because R1 needs D's
    second derivative and convolution has one.
    """

    def __init__(self) -> None:
        super().__init__()
        taps = torch.tensor([1.0, 3.0, 3.0, 1.0])
        kernel = torch.outer(taps, taps)
        self.register_buffer("kernel", (kernel / kernel.sum())[None, None], persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        channels = x.shape[1]
        kernel = self.kernel.to(x.dtype).expand(channels, 1, 4, 4)
        return F.conv2d(x, kernel, stride=2, padding=1, groups=channels)


class EqualLinear(nn.Module):
    """A fully connected layer with equalized learning rate and an optional learning-rate multiplier.

    The stored weight is N(0, 1) / lr_multiplier and is multiplied by lr_multiplier / sqrt(in)
    at run time: the layer computes what a He-initialised one does, while Adam's updates to the
    stored weight move the used weight lr_multiplier times as fast.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        activation: bool = False,
        bias_init: float = 0.0,
        lr_multiplier: float = 1.0,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_multiplier)
        self.bias = nn.Parameter(torch.full((out_features,), bias_init / lr_multiplier))
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier
        self.activation = activation

    def forward(self, x: Tensor) -> Tensor:
        x = F.linear(x, self.weight * self.weight_gain, self.bias * self.bias_gain)
        return leaky_relu(x) if self.activation else x


class EqualConv2d(nn.Module):
    """A same-padded convolution with equalized learning rate (weights N(0, 1) times 1/sqrt(fan-in))."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.padding = kernel_size // 2

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.weight_gain, self.bias, padding=self.padding)


class MappingNetwork(nn.Module):
    """z (and the label embedding) -> w: normalised input, then ``num_layers`` slow FC layers."""

    def __init__(
        self, latent_dim: int, num_classes: int, style_dim: int, num_layers: int, lr_multiplier: float
    ) -> None:
        super().__init__()
        self.label_input = LabelEmbedding(latent_dim, num_classes)
        sizes = [self.label_input.out_features] + [style_dim] * num_layers
        self.layers = nn.Sequential(
            *(
                EqualLinear(in_features, out_features, activation=True, lr_multiplier=lr_multiplier)
                for in_features, out_features in zip(sizes, sizes[1:])
            )
        )

    def forward(self, z: Tensor, labels: Tensor | None) -> Tensor:
        return self.layers(self.label_input(normalize_2nd_moment(z), labels))


def demodulation_factors(weight: Tensor, styles: Tensor) -> Tensor:
    """(N, out): 1 / the L2 norm of each sample's modulated weights for each output channel.

    The squared norm, sum_i s_i^2 sum_k w_oik^2, is one matmul instead of a reduction over the
    (N, out, in, k, k) modulated weights.
    """
    return (styles.square() @ weight.square().sum(dim=(2, 3)).T + EPSILON).rsqrt()


class ModulatedConv2d(nn.Module):
    """A convolution whose input channels are scaled per sample by a style, then (optionally) demodulated.

    Demodulation rescales each output channel's weights to unit L2 norm after modulation, which
    normalises the expected output statistics without AdaIN's data-dependent normalisation (the
    cause of StyleGAN's droplet artifacts).

    Each sample has its own weights, so the paper's form runs the batch as one convolution with
    ``groups=N``, the batch folded into the channels; that is what eval mode does.  In training
    mode the same numbers come from scaling the activations instead (input channels by the
    style, output channels by the demodulation factor) around one ordinary convolution, which
    has the same value and gradient and is about twice as fast to train on a CPU.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, style_dim: int, demodulate: bool = True
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        # The style starts at 1 for every channel: at initialisation the layer is a plain convolution.
        self.affine = EqualLinear(style_dim, in_channels, bias_init=1.0)
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.demodulate = demodulate
        self.padding = kernel_size // 2

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        styles = self.affine(w)
        weight = self.weight * self.weight_gain
        demodulation = demodulation_factors(weight, styles) if self.demodulate else None
        if self.training:
            x = F.conv2d(x * styles[:, :, None, None], weight, padding=self.padding)
            return x if demodulation is None else x * demodulation[:, :, None, None]
        return self._grouped(x, weight, styles, demodulation)

    def _grouped(self, x: Tensor, weight: Tensor, styles: Tensor, demodulation: Tensor | None) -> Tensor:
        """The paper's form: per-sample modulated (and demodulated) weights, one grouped convolution."""
        batch, in_channels, height, width = x.shape
        per_sample = weight[None] * styles[:, None, :, None, None]
        if demodulation is not None:
            per_sample = per_sample * demodulation[:, :, None, None, None]
        out_channels, kernel_size = weight.shape[0], weight.shape[-1]
        x = F.conv2d(
            x.reshape(1, batch * in_channels, height, width),
            per_sample.reshape(batch * out_channels, in_channels, kernel_size, kernel_size),
            padding=self.padding,
            groups=batch,
        )
        return x.reshape(batch, out_channels, height, width)


class StyledConv(nn.Module):
    """Modulated 3x3 convolution, then per-pixel noise times a learned strength, bias and activation."""

    def __init__(self, in_channels: int, out_channels: int, style_dim: int, size: int) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, 3, style_dim)
        # Zero at the start: the network learns how much stochastic detail each layer needs.
        self.noise_strength = nn.Parameter(torch.zeros(()))
        self.register_buffer("noise_const", torch.randn(1, 1, size, size))
        self.bias = nn.Parameter(torch.zeros(out_channels))

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        x = self.conv(x, w)
        if self.training:
            noise = torch.randn(x.shape[0], 1, *x.shape[2:], device=x.device, dtype=x.dtype)
        else:
            noise = self.noise_const.to(x.dtype)
        x = x + noise * self.noise_strength
        return leaky_relu(x + self.bias[:, None, None])


class ToRGB(nn.Module):
    """A modulated 1x1 convolution to the image's channels (the CT, plus any mask channels),
    without demodulation (as in the paper)."""

    def __init__(self, in_channels: int, style_dim: int, image_channels: int = 1) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, image_channels, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(image_channels))

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        return self.conv(x, w) + self.bias[:, None, None]


class SynthesisBlock(nn.Module):
    """One doubling of the size: upsample, two styled convolutions, and this size's image added to the skip sum."""

    def __init__(self, in_channels: int, out_channels: int, style_dim: int, size: int, image_channels: int = 1) -> None:
        super().__init__()
        self.conv0 = StyledConv(in_channels, out_channels, style_dim, size)
        self.conv1 = StyledConv(out_channels, out_channels, style_dim, size)
        self.to_rgb = ToRGB(out_channels, style_dim, image_channels)

    def forward(self, x: Tensor, image: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
        x = self.conv1(self.conv0(upsample(x), w), w)
        return x, upsample(image) + self.to_rgb(x, w)


class StyleGAN2Generator(ImageGenerator):
    def __init__(
        self,
        latent_dim: int,
        num_classes: int,
        resolution: int,
        style_dim: int,
        mapping_layers: int,
        mapping_lr_multiplier: float,
        channel_base: int,
        channel_max: int,
        image_channels: int = 1,
    ) -> None:
        super().__init__(latent_dim, num_classes, resolution, image_channels)
        self.mapping = MappingNetwork(latent_dim, num_classes, style_dim, mapping_layers, mapping_lr_multiplier)
        sizes = [4 << step for step in range(resolution.bit_length() - 2)]
        channels = [channels_at(size, channel_base, channel_max) for size in sizes]
        self.const = nn.Parameter(torch.randn(1, channels[0], 4, 4))
        self.input_conv = StyledConv(channels[0], channels[0], style_dim, 4)
        self.input_rgb = ToRGB(channels[0], style_dim, image_channels)
        self.blocks = nn.ModuleList(
            SynthesisBlock(in_channels, out_channels, style_dim, size, image_channels)
            for in_channels, out_channels, size in zip(channels, channels[1:], sizes[1:])
        )

    def forward(self, z: Tensor, labels: Tensor | None = None, truncation_psi: float = 1.0) -> Tensor:
        """``truncation_psi`` < 1 is the truncation trick: w moves toward the average w (of the
        label, when conditional) by that factor, for nearer-average images with less variety."""
        w = self.mapping(z, labels)
        if truncation_psi != 1.0:
            w = torch.lerp(self.average_style(labels, w.device), w, truncation_psi)
        x = self.input_conv(self.const.expand(z.shape[0], -1, -1, -1), w)
        image = self.input_rgb(x, w)
        for block in self.blocks:
            x, image = block(x, image, w)
        return torch.tanh(image)


    def average_style(self, labels: Tensor | None, device: torch.device) -> Tensor:
        """The mapping network's mean w over a fixed draw of z, (N, style_dim) with one row per label.

        Computed when asked rather than tracked during training (stylegan2-ada's ``w_avg``), so
        every checkpoint has it; the z are drawn from a fixed seed, so it is the same at every call.
        """
        z = torch.randn(AVERAGE_STYLE_SAMPLES, self.latent_dim, generator=torch.Generator().manual_seed(0)).to(device)
        if labels is None:
            return self.mapping(z, None).mean(dim=0, keepdim=True)
        classes, rows = labels.unique(return_inverse=True)
        means = torch.cat([self.mapping(z, label.repeat(len(z))).mean(dim=0, keepdim=True) for label in classes])
        return means[rows]


def minibatch_stddev(x: Tensor, group_size: int) -> Tensor:
    """Append one feature map: the standard deviation across a group of samples, averaged over features and pixels.

    It lets D see the variety of a batch, which discourages mode collapse.  A group is as large
    as ``group_size`` allows while dividing the batch (a last, short batch still works); its
    members are samples ``n, n + N/G, n + 2N/G, ...``.
    """
    batch, _, height, width = x.shape
    group = next(size for size in range(min(group_size, batch), 0, -1) if batch % size == 0)
    grouped = x.reshape(group, batch // group, *x.shape[1:])
    stddev = (grouped.var(dim=0, unbiased=False) + EPSILON).sqrt().mean(dim=(1, 2, 3))
    feature = stddev.repeat(group)[:, None, None, None].expand(batch, 1, height, width)
    return torch.cat((x, feature.to(x.dtype)), dim=1)


class MinibatchStdDev(nn.Module):
    """:func:`minibatch_stddev` as a layer: a D that has it mixes the samples of a batch (see losses.py)."""

    def __init__(self, group_size: int) -> None:
        super().__init__()
        self.group_size = group_size

    def forward(self, x: Tensor) -> Tensor:
        return minibatch_stddev(x, self.group_size)


class DiscriminatorBlock(nn.Module):
    """Residual: (3x3 conv, downsample, 3x3 conv) plus (downsample, 1x1 conv), scaled by 1/sqrt(2)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv0 = EqualConv2d(in_channels, in_channels, 3)
        self.conv1 = EqualConv2d(in_channels, out_channels, 3)
        self.skip = EqualConv2d(in_channels, out_channels, 1, bias=False)
        self.downsample = Downsample()

    def forward(self, x: Tensor) -> Tensor:
        skip = self.skip(self.downsample(x))
        x = leaky_relu(self.conv1(self.downsample(leaky_relu(self.conv0(x)))))
        # The sum of two unit-variance branches has variance 2.
        return (x + skip) / math.sqrt(2)


class StyleGAN2Discriminator(ImageDiscriminator):
    def __init__(
        self,
        num_classes: int,
        conditioning: Conditioning,
        resolution: int,
        channel_base: int,
        channel_max: int,
        mbstd_group_size: int,
        image_channels: int = 1,
    ) -> None:
        super().__init__(num_classes, resolution)
        sizes = [resolution >> step for step in range(resolution.bit_length() - 2)]
        channels = [channels_at(size, channel_base, channel_max) for size in sizes]
        last = channels[-1]
        # Projection reads the features of the last hidden layer, the ones the logit is computed from.
        self.label_conditioning = DiscriminatorConditioning(num_classes, conditioning, feature_dim=last)
        self.from_rgb = EqualConv2d(image_channels + self.label_conditioning.extra_inputs, channels[0], 1)
        self.blocks = nn.Sequential(*(DiscriminatorBlock(*pair) for pair in zip(channels, channels[1:])))
        self.mbstd = MinibatchStdDev(mbstd_group_size)
        self.conv = EqualConv2d(last + 1, last, 3)
        self.fc = EqualLinear(last * 4 * 4, last, activation=True)
        self.output = EqualLinear(last, 1)

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        x = leaky_relu(self.from_rgb(self.label_conditioning.inputs(x, labels)))
        x = leaky_relu(self.conv(self.mbstd(self.blocks(x))))
        features = self.fc(x.flatten(start_dim=1))
        return self.label_conditioning.logits(self.output(features).squeeze(1), features, labels)


def build_stylegan2(
    latent_dim: int,
    conditional: bool,
    conditioning: Conditioning,
    style_dim: int,
    mapping_layers: int,
    mapping_lr_multiplier: float,
    channel_base: int,
    channel_max: int,
    mbstd_group_size: int,
    resolution: int,
    num_classes: int,
    image_channels: int = 1,
) -> tuple[StyleGAN2Generator, StyleGAN2Discriminator]:
    """The (generator, discriminator) pair for ``model=stylegan2`` at ``resolution`` x ``resolution``."""
    require_positive("model.latent_dim", [latent_dim])
    require_positive("model.style_dim", [style_dim])
    require_positive("model.mapping_layers", [mapping_layers])
    require_positive("model.channel_base", [channel_base])
    require_positive("model.channel_max", [channel_max])
    require_positive("model.mbstd_group_size", [mbstd_group_size])
    if mapping_lr_multiplier <= 0:
        raise LiverGanError(
            f"model.mapping_lr_multiplier={mapping_lr_multiplier} must be positive: the paper uses 0.01"
        )
    # Both networks double or halve the size between 4x4 and the image.
    check_power_of_two(resolution, MIN_RESOLUTION, "stylegan2")
    classes = model_classes(conditional, num_classes)
    generator = StyleGAN2Generator(
        latent_dim,
        classes,
        resolution,
        style_dim,
        mapping_layers,
        mapping_lr_multiplier,
        channel_base,
        channel_max,
        image_channels,
    )
    discriminator = StyleGAN2Discriminator(
        classes, conditioning, resolution, channel_base, channel_max, mbstd_group_size, image_channels
    )
    return generator, discriminator
