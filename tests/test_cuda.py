"""Training on a GPU (issue 17): bf16 autocast with every loss, a GPU checkpoint continued and sampled
on the CPU, and deterministic mode.  The CUDA cases skip, saying so, where no GPU is visible; the bf16
step also runs under the CPU's autocast, which exercises the same double backward of R1 and WGAN-GP.
FID on the GPU against the CPU's is tests/test_fid.py::test_fid_on_cuda_equals_the_cpu_within_a_thousandth.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import pytest
import torch
from omegaconf import DictConfig

from liver_gan.loss_schema import LossConfig, LossName
from liver_gan.models.dcgan import build_dcgan
from liver_gan.models.schema import Conditioning
from liver_gan.runs import load_generator
from liver_gan.sampling import generate
from liver_gan.training.checkpoint import load_checkpoint
from liver_gan.training.gan_step import GAN, train_step
from liver_gan.training.loop import train

Compose = Callable[..., DictConfig]
NEEDS_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: no GPU visible in this session")
DEVICES = ["cpu", pytest.param("cuda", marks=NEEDS_CUDA)]
EVERY_LOSS = [
    LossConfig(name=LossName.bce),
    LossConfig(name=LossName.nonsaturating, gradient_penalty=1.0),
    LossConfig(name=LossName.hinge),
    LossConfig(name=LossName.wgan_gp, gradient_penalty=10.0),
]
TINY_DCGAN_RUN = [
    "model=dcgan",
    "model.generator_channels=4",
    "model.discriminator_channels=4",
    "trainer.batch_size=4",
    "trainer.max_steps=3",
    "trainer.checkpoint_every=1",
    "eval.enabled=false",
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("cfg", EVERY_LOSS, ids=lambda cfg: cfg.name.value)
def test_a_bf16_step_trains_both_networks_with_every_loss(cfg: LossConfig, device: str) -> None:
    torch.manual_seed(0)
    generator, discriminator = (
        network.to(device) for network in build_dcgan(8, True, 4, 4, Conditioning.projection, 16, 2)
    )
    optimizers = (torch.optim.Adam(network.parameters()) for network in (generator, discriminator))
    gan = GAN(generator, discriminator, *optimizers, cfg)
    before = {network: [weight.detach().clone() for weight in network.parameters()] for network in (generator, discriminator)}
    real = torch.rand(4, 1, 16, 16, device=device) * 2 - 1
    labels = torch.tensor([0, 1, 1, 0], device=device)
    values = train_step(gan, cfg, real, labels, torch.autocast(device, dtype=torch.bfloat16))
    assert values.dtype == torch.float32 and torch.isfinite(values).all()
    for network, old in before.items():
        new = list(network.parameters())
        assert all(torch.isfinite(parameter).all() for parameter in new)
        assert not all(torch.equal(a, b) for a, b in zip(old, new)), f"{type(network).__name__} did not step"


@pytest.fixture
def global_determinism() -> Iterator[None]:
    saved = torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark
    yield
    torch.use_deterministic_algorithms(saved[0])
    torch.backends.cudnn.benchmark = saved[1]


@NEEDS_CUDA
@pytest.mark.slow
def test_a_gpu_checkpoint_continues_and_samples_on_the_cpu(
    compose_config: Compose, tiny_phantom: list[str], tmp_path: Path
) -> None:
    """A fused-Adam, bf16 GPU checkpoint, continued on the CPU and sampled there."""
    run = [*tiny_phantom, *TINY_DCGAN_RUN, "trainer.resume=auto"]
    train(compose_config([*run, "trainer.device=cuda", "trainer.amp=true"], hydra=False), tmp_path)
    metrics = train(compose_config([*run, "trainer.device=cpu", "trainer.max_steps=5"], hydra=False), tmp_path)
    assert metrics["steps"] == 5
    generator, _ = load_generator(tmp_path, torch.device("cpu"))
    images = generate(generator, 4, "cpu", seed=0)
    assert images.shape[0] == 4 and torch.isfinite(images).all()


@NEEDS_CUDA
@pytest.mark.slow
@pytest.mark.usefixtures("global_determinism")
def test_deterministic_gpu_runs_give_identical_weights(
    compose_config: Compose, tiny_phantom: list[str], tmp_path: Path
) -> None:
    run = [*tiny_phantom, *TINY_DCGAN_RUN, "trainer.device=cuda", "trainer.deterministic=true"]
    cfg = compose_config(run, hydra=False)
    states = []
    for name in ("first", "second"):
        train(cfg, tmp_path / name)
        states.append(load_checkpoint(tmp_path / name / "checkpoints" / "last.pt"))
    for network in ("generator", "discriminator"):
        for name, tensor in states[0][network].items():
            assert torch.equal(states[1][network][name], tensor), f"{network}.{name}"
