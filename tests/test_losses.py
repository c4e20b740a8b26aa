"""GAN losses: known values on known logits, the gradient penalties, and that they optimise."""

from __future__ import annotations

from typing import Callable

import pytest
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import Tensor, nn

from liver_gan.errors import LiverGanError
from liver_gan import losses
from liver_gan.loss_schema import LossConfig, LossName
from liver_gan.losses import discriminator_loss, generator_loss
from liver_gan.models.dcgan import build_dcgan
from liver_gan.models.mlp import build_mlp_gan
from liver_gan.models.schema import Conditioning

PIXELS = 16  # 4x4 images


class LinearCritic(nn.Module):
    """logit = <w, x> + b.  Its input gradient is w for every image, so penalties have closed forms."""

    def __init__(self, weight: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((PIXELS,), weight))
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        return x.flatten(1) @ self.weight + self.bias


class ConstantCritic(nn.Module):
    """A D that ignores its input: the gradient the penalties see is exactly zero."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.tensor(0.5))

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        return self.bias.expand(x.shape[0])


def images_with_logits(logits: list[float]) -> Tensor:
    """Constant images whose LinearCritic(1/PIXELS) logit (their mean) is the given value."""
    return torch.tensor(logits)[:, None, None, None].expand(-1, 1, 4, 4).contiguous()


def loss_config(name: LossName, gradient_penalty: float = 0.0) -> LossConfig:
    return LossConfig(name=name, gradient_penalty=gradient_penalty)


REAL_LOGITS = [2.0, -1.0]
FAKE_LOGITS = [0.5, -3.0]
REAL, FAKE = images_with_logits(REAL_LOGITS), images_with_logits(FAKE_LOGITS)
# ||w|| of LinearCritic(1 / PIXELS) is sqrt(PIXELS) / PIXELS = 0.25.
CRITIC_GRADIENT_NORM = 0.25


def known_losses(name: LossName, gradient_penalty: float = 0.0) -> tuple[Tensor, Tensor, Tensor]:
    return discriminator_loss(loss_config(name, gradient_penalty), LinearCritic(1 / PIXELS), REAL, FAKE, None)


def known_generator_loss(name: LossName) -> Tensor:
    return generator_loss(loss_config(name), torch.tensor(FAKE_LOGITS))


def test_bce_is_the_thesis_bce_on_probabilities() -> None:
    loss, real_logits, fake_logits = known_losses(LossName.bce)
    real_p, fake_p = torch.sigmoid(torch.tensor(REAL_LOGITS)), torch.sigmoid(torch.tensor(FAKE_LOGITS))

    expected = F.binary_cross_entropy(real_p, torch.ones(2)) + F.binary_cross_entropy(fake_p, torch.zeros(2))
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(real_logits, torch.tensor(REAL_LOGITS))
    torch.testing.assert_close(fake_logits, torch.tensor(FAKE_LOGITS))
    assert not real_logits.requires_grad and not fake_logits.requires_grad
    thesis_g_loss = F.binary_cross_entropy(fake_p, torch.ones(2))
    torch.testing.assert_close(known_generator_loss(LossName.bce), thesis_g_loss)


def test_bce_stays_finite_where_the_sigmoid_saturates() -> None:
    logits = torch.tensor([-200.0, 200.0])
    assert torch.isfinite(generator_loss(loss_config(LossName.bce), logits))
    torch.testing.assert_close(generator_loss(loss_config(LossName.bce), logits), torch.tensor(100.0))


def test_nonsaturating_without_penalty_is_the_logistic_loss() -> None:
    torch.testing.assert_close(known_losses(LossName.nonsaturating)[0], known_losses(LossName.bce)[0])
    nonsaturating_g_loss = known_generator_loss(LossName.nonsaturating)
    torch.testing.assert_close(nonsaturating_g_loss, known_generator_loss(LossName.bce))


def test_hinge_values() -> None:
    # D: mean(relu(1 - [2, -1])) + mean(relu(1 + [0.5, -3])) = mean(0, 2) + mean(1.5, 0)
    torch.testing.assert_close(known_losses(LossName.hinge)[0], torch.tensor(1.0 + 0.75))
    torch.testing.assert_close(known_generator_loss(LossName.hinge), torch.tensor(1.25))


def test_wasserstein_values() -> None:
    # E[D(fake)] - E[D(real)] = -1.25 - 0.5; the penalty adds lambda * (0.25 - 1)^2
    torch.testing.assert_close(known_losses(LossName.wgan_gp)[0], torch.tensor(-1.75))
    penalised = known_losses(LossName.wgan_gp, gradient_penalty=10.0)[0]
    torch.testing.assert_close(penalised, torch.tensor(-1.75 + 10.0 * (CRITIC_GRADIENT_NORM - 1) ** 2))
    torch.testing.assert_close(known_generator_loss(LossName.wgan_gp), torch.tensor(1.25))


def test_r1_value_and_its_gradient_reaches_d() -> None:
    gamma = 2.0
    penalised = known_losses(LossName.nonsaturating, gradient_penalty=gamma)[0]
    plain = known_losses(LossName.nonsaturating)[0]
    torch.testing.assert_close(penalised - plain, torch.tensor(gamma / 2 * CRITIC_GRADIENT_NORM**2))

    # d/dw of gamma/2 * ||w||^2 is gamma * w: the penalty trains D, not only reports.
    gradients = []
    for weight in (gamma, 0.0):
        critic = LinearCritic(1 / PIXELS)
        config = loss_config(LossName.nonsaturating, weight)
        discriminator_loss(config, critic, REAL, FAKE, None)[0].backward()
        gradients.append(critic.weight.grad)
    torch.testing.assert_close(gradients[0] - gradients[1], gamma * torch.full((PIXELS,), 1 / PIXELS))


@pytest.mark.parametrize("critic_factory", [lambda: LinearCritic(0.0), ConstantCritic])
def test_penalties_at_zero_input_gradient(critic_factory: Callable[[], nn.Module]) -> None:
    # R1 of a zero gradient is 0; WGAN-GP's (0 - 1)^2 is 1, so the penalty is lambda itself.
    cases = [(LossName.nonsaturating, 5.0, 0.0), (LossName.wgan_gp, 10.0, 10.0)]
    for name, gradient_penalty, expected_penalty in cases:
        critic = critic_factory()
        penalised = discriminator_loss(loss_config(name, gradient_penalty), critic, REAL, FAKE, None)[0]
        plain = discriminator_loss(loss_config(name), critic, REAL, FAKE, None)[0]
        torch.testing.assert_close(penalised - plain, torch.tensor(expected_penalty))
        penalised.backward()
        assert all(torch.isfinite(parameter.grad).all() for parameter in critic.parameters())


def tiny_mlp_discriminator(conditional: bool = False) -> nn.Module:
    return build_mlp_gan(8, conditional, [16], [32, 16], 8, 2 if conditional else 0)[1]


@pytest.mark.parametrize("name", [LossName.nonsaturating, LossName.wgan_gp])
def test_penalties_are_positive_for_a_real_discriminator(name: LossName) -> None:
    torch.manual_seed(0)
    discriminator = tiny_mlp_discriminator()
    real, fake = torch.rand(4, 1, 8, 8) * 2 - 1, torch.rand(4, 1, 8, 8) * 2 - 1
    penalised = discriminator_loss(loss_config(name, 1.0), discriminator, real, fake, None)[0]
    plain = discriminator_loss(loss_config(name), discriminator, real, fake, None)[0]
    assert penalised - plain > 0


@pytest.mark.parametrize("name, gradient_penalty", [(LossName.nonsaturating, 1.0), (LossName.wgan_gp, 10.0)])
def test_penalties_through_batchnorm_and_labels(name: LossName, gradient_penalty: float) -> None:
    """DCGAN's D (BatchNorm, in-place LeakyReLU, projection) survives the double backward."""
    torch.manual_seed(0)
    _, discriminator = build_dcgan(8, True, 4, 4, Conditioning.projection, 16, 2)
    real, fake, labels = torch.rand(3, 1, 16, 16), torch.rand(3, 1, 16, 16), torch.tensor([0, 1, 1])
    cfg = loss_config(name, gradient_penalty)
    loss, real_logits, fake_logits = discriminator_loss(cfg, discriminator, real, fake, labels)
    loss.backward()
    assert real_logits.shape == fake_logits.shape == (3,)
    assert all(torch.isfinite(parameter.grad).all() for parameter in discriminator.parameters())


def test_composed_loss_configs_work(compose_config: Callable[..., DictConfig]) -> None:
    discriminator = tiny_mlp_discriminator()
    real, fake = torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8)
    for name in LossName:
        cfg = compose_config([f"loss={name.value}"]).loss
        loss = discriminator_loss(cfg, discriminator, real, fake, None)[0]
        assert torch.isfinite(loss) and torch.isfinite(generator_loss(cfg, discriminator(fake)))


@pytest.mark.parametrize("name", [LossName.bce, LossName.hinge])
def test_penalty_on_a_loss_without_one_is_refused(name: LossName) -> None:
    with pytest.raises(LiverGanError, match="loss.gradient_penalty"):
        known_losses(name, gradient_penalty=1.0)


def test_negative_penalty_is_refused() -> None:
    with pytest.raises(LiverGanError, match="loss.gradient_penalty"):
        known_losses(LossName.wgan_gp, gradient_penalty=-1.0)


SANITY_CONFIGS = [
    loss_config(LossName.bce),
    loss_config(LossName.nonsaturating, 1.0),
    loss_config(LossName.hinge),
    loss_config(LossName.wgan_gp, 10.0),
]


@pytest.mark.parametrize("cfg", SANITY_CONFIGS, ids=lambda cfg: cfg.name.value)
def test_discriminator_learns_separable_data(cfg: LossConfig) -> None:
    torch.manual_seed(0)
    discriminator = tiny_mlp_discriminator(conditional=True)
    optimizer = torch.optim.Adam(discriminator.parameters(), lr=1e-2)
    real = (0.5 + 0.1 * torch.randn(16, 1, 8, 8)).clamp(-1, 1)
    fake = (-0.5 + 0.1 * torch.randn(16, 1, 8, 8)).clamp(-1, 1)
    labels = torch.randint(0, 2, (16,))

    losses, margins = [], []
    for _ in range(30):
        loss, real_logits, fake_logits = discriminator_loss(cfg, discriminator, real, fake, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        margins.append((real_logits.mean() - fake_logits.mean()).item())

    assert losses[-1] < losses[0] - 0.5
    assert margins[-1] > margins[0] and margins[-1] > 0


@pytest.mark.parametrize("cfg", SANITY_CONFIGS, ids=lambda cfg: cfg.name.value)
def test_generator_loss_pulls_fakes_towards_real(cfg: LossConfig) -> None:
    """Against a fixed D that scores brightness, minimising G's loss raises D(G(z))."""
    torch.manual_seed(0)
    generator = build_mlp_gan(8, False, [16], [16], 8, 0)[0]
    critic = nn.Sequential(nn.Flatten(), nn.Linear(64, 1))
    nn.init.constant_(critic[1].weight, 1 / 64)
    nn.init.zeros_(critic[1].bias)
    optimizer = torch.optim.Adam(generator.parameters(), lr=1e-2)
    z = torch.randn(16, 8)

    scores = []
    for _ in range(20):
        fake_logits = critic(generator(z)).squeeze(1)
        optimizer.zero_grad()
        generator_loss(cfg, fake_logits).backward()
        optimizer.step()
        scores.append(fake_logits.mean().item())

    assert scores[-1] > scores[0] + 0.2


def separate_calls(discriminator: nn.Module, real: Tensor, fake: Tensor, labels: Tensor | None) -> tuple[Tensor, Tensor]:
    return discriminator(real, labels), discriminator(fake, labels)


def loss_and_gradients(cfg: LossConfig, discriminator: nn.Module, real: Tensor, fake: Tensor, labels: Tensor) -> list[Tensor]:
    torch.manual_seed(1)  # wgan_gp draws its interpolation weights
    discriminator.zero_grad(set_to_none=True)
    loss, real_logits, fake_logits = discriminator_loss(cfg, discriminator, real, fake, labels)
    loss.backward()
    return [loss.detach(), real_logits, fake_logits, *(parameter.grad for parameter in discriminator.parameters())]


@pytest.mark.parametrize("cfg", SANITY_CONFIGS, ids=lambda cfg: cfg.name.value)
def test_joint_real_fake_call_computes_what_two_calls_do(cfg: LossConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    """A D without BatchNorm sees real and fake in one batch: same loss, logits and gradients."""
    torch.manual_seed(0)
    discriminator = tiny_mlp_discriminator(conditional=True)
    real, fake = torch.rand(5, 1, 8, 8) * 2 - 1, torch.rand(5, 1, 8, 8) * 2 - 1
    labels = torch.tensor([0, 1, 1, 0, 1])
    joint = loss_and_gradients(cfg, discriminator, real, fake, labels)
    monkeypatch.setattr(losses, "_real_and_fake_logits", separate_calls)
    separate = loss_and_gradients(cfg, discriminator, real, fake, labels)
    for joint_value, separate_value in zip(joint, separate, strict=True):
        torch.testing.assert_close(joint_value, separate_value, rtol=1e-5, atol=1e-6)


def test_batchnorm_discriminator_normalises_real_and_fake_separately() -> None:
    """DCGAN's BatchNorm statistics come from the real batch and the fake batch, never a mix."""
    torch.manual_seed(0)
    _, discriminator = build_dcgan(8, True, 4, 4, Conditioning.projection, 16, 2)
    _, reference = build_dcgan(8, True, 4, 4, Conditioning.projection, 16, 2)
    reference.load_state_dict(discriminator.state_dict())
    real, fake = torch.rand(4, 1, 16, 16), torch.rand(4, 1, 16, 16) - 1
    labels = torch.tensor([0, 1, 1, 0])
    _, real_logits, fake_logits = discriminator_loss(loss_config(LossName.bce), discriminator, real, fake, labels)
    expected_real, expected_fake = separate_calls(reference, real, fake, labels)
    torch.testing.assert_close(real_logits, expected_real.detach(), rtol=0, atol=0)
    torch.testing.assert_close(fake_logits, expected_fake.detach(), rtol=0, atol=0)
    torch.testing.assert_close(discriminator.state_dict(), reference.state_dict(), rtol=0, atol=0)


@pytest.mark.parametrize("cfg", SANITY_CONFIGS, ids=lambda cfg: cfg.name.value)
@pytest.mark.parametrize("family", ["mlp", "dcgan"])
def test_losses_run_under_bf16_autocast(cfg: LossConfig, family: str) -> None:
    """Under autocast G's fake batch comes out bf16 while the real batch stays fp32."""
    torch.manual_seed(0)
    if family == "mlp":
        discriminator = tiny_mlp_discriminator(conditional=True)
        real = torch.rand(4, 1, 8, 8) * 2 - 1
    else:
        discriminator = build_dcgan(8, True, 4, 4, Conditioning.projection, 16, 2)[1]
        real = torch.rand(4, 1, 16, 16) * 2 - 1
    fake = (torch.rand_like(real) * 2 - 1).to(torch.bfloat16)
    labels = torch.tensor([0, 1, 1, 0])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, real_logits, fake_logits = discriminator_loss(cfg, discriminator, real, fake, labels)
    loss.backward()
    assert torch.isfinite(loss) and real_logits.shape == fake_logits.shape == (4,)
    assert all(torch.isfinite(parameter.grad).all() for parameter in discriminator.parameters())


class BF16Critic(nn.Module):
    """A D whose logits come out in bf16, as under bf16 autocast: the mean of each image, rounded to bf16."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        return (x.flatten(1).mean(1) * self.scale).to(torch.bfloat16)


class RoundedCritic(BF16Critic):
    """The same bf16-rounded logits, handed on as float32."""

    def forward(self, x: Tensor, labels: Tensor | None = None) -> Tensor:
        return super().forward(x, labels).float()


@pytest.mark.parametrize("name", list(LossName), ids=lambda name: name.value)
def test_loss_means_are_reduced_in_float32_from_bf16_logits(name: LossName) -> None:
    """A bf16 mean over a batch keeps 8 bits: the losses must reduce the bf16 logits in float32."""
    torch.manual_seed(0)
    real, fake = torch.randn(256, 1, 2, 2) + 1, torch.randn(256, 1, 2, 2) - 1
    cfg = loss_config(name)
    d_loss = discriminator_loss(cfg, BF16Critic(), real, fake, None)[0]
    expected_d_loss = discriminator_loss(cfg, RoundedCritic(), real, fake, None)[0]
    g_loss = generator_loss(cfg, BF16Critic()(fake))
    expected_g_loss = generator_loss(cfg, RoundedCritic()(fake))
    assert d_loss.dtype == g_loss.dtype == torch.float32
    torch.testing.assert_close(d_loss, expected_d_loss, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(g_loss, expected_g_loss, rtol=1e-6, atol=1e-7)
