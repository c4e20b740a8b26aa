"""One run on several processes (issue 17): the pieces on one process, and a 2-process gloo run
launched with torchrun as a user would launch it (slow)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
import torch
import torch.distributed as dist
from torch import Tensor
from tiny_gan import tiny_phantom_overrides

from liver_gan.augment import AdaptiveAugment
from liver_gan.errors import LiverGanError
from liver_gan.runs import load_generator
from liver_gan.sampling import generate
from liver_gan.training.batch_noise import BatchNoise
from liver_gan.training.checkpoint import load_checkpoint
from liver_gan.distributed import (
    World,
    average_gradients_before_steps,
    broadcast_networks,
    rank_seed,
    shard,
    shard_range,
)
from liver_gan.training.checks import check_trainer_options
from liver_gan.training.loop import train

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", autouse=True)
def restore_determinism() -> Iterator[None]:
    """Deterministic mode is process-wide: hand the default back to the tests after these."""
    yield
    torch.use_deterministic_algorithms(False)


@pytest.mark.parametrize("batch_size", [4, 7, 64])
def test_the_ranks_split_a_global_batch_into_contiguous_shards(batch_size: int) -> None:
    batch = torch.randperm(100)[:batch_size]
    shards = [shard(batch, World(rank=rank, size=3)) for rank in range(3)]
    assert torch.equal(torch.cat(shards), batch)
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    assert [shard_range(batch_size, World(rank=rank, size=3)) for rank in range(3)] == [
        range(sum(map(len, shards[:rank])), sum(map(len, shards[: rank + 1]))) for rank in range(3)
    ]


def test_a_batch_smaller_than_the_world_gives_each_rank_one_image() -> None:
    batch = torch.tensor([5, 9])
    assert [shard(batch, World(rank=rank, size=3)).tolist() for rank in range(3)] == [[5], [9], [5]]


def test_each_rank_draws_from_a_stream_of_its_own() -> None:
    seeds = {rank_seed(seed, rank) for seed in (0, 1) for rank in range(4)}
    assert len(seeds) == 8


def test_the_ranks_draw_the_noise_one_process_draws_for_their_shards() -> None:
    """Per-sample noise of a step: the 2 ranks' shards, put together, are the single process's draw,
    and no two samples share noise."""

    def draws(world: World, step: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        rows = shard(torch.arange(6), world)
        noise = BatchNoise.of_step(seed=0, step=step, rows=rows, global_size=6)
        return noise.randint(1000), noise.randn(2, 3), noise.rand(), noise.randn(4)

    single = draws(World(), step=5)
    ranks = [draws(World(rank=rank, size=2), step=5) for rank in range(2)]
    for one, (first, second) in zip(single, zip(*ranks)):
        assert torch.equal(torch.cat([first, second]), one)
    latents = single[3]
    assert len({tuple(row.tolist()) for row in latents}) == 6
    assert not torch.equal(draws(World(), step=6)[3], latents)


def test_a_global_batch_smaller_than_the_world_is_refused(compose_config, tiny_phantom: list[str]) -> None:
    cfg = compose_config([*tiny_phantom, "trainer.batch_size=2", "trainer.device=cpu"], hydra=False)
    with pytest.raises(LiverGanError, match="trainer.batch_size=2 .* smaller than the 4 ranks"):
        check_trainer_options(cfg, torch.device("cpu"), World(rank=1, size=4))


def train_three_steps_on_rank(rank: int, init_file: str, results: str) -> None:
    """Rank ``rank`` of 2: a linear model from its own seed, 3 fused-Adam steps on data of its own,
    and ADA observing real logits of its own."""
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    torch.manual_seed(rank)
    network = torch.nn.Linear(4, 1)
    broadcast_networks([network])
    optimizer = torch.optim.Adam(network.parameters(), fused=True)
    average_gradients_before_steps([optimizer], World(rank=rank, size=2))
    for _ in range(3):
        optimizer.zero_grad(set_to_none=True)
        network(torch.randn(8, 4)).square().mean().backward()
        optimizer.step()
    ada = AdaptiveAugment(adjust_every=2, ada_kimg=0.001)  # p moves by images / 1 per adjustment
    for _ in range(2):
        ada.observe(torch.tensor([1.0, 1.0, 1.0]) if rank == 0 else torch.tensor([-1.0]))
    torch.save({**network.state_dict(), "ada_p": ada.p, "ada_overfitting": ada.overfitting}, f"{results}.{rank}")
    dist.destroy_process_group()


@pytest.mark.slow
def test_averaged_gradients_and_ada_statistics_keep_the_ranks_equal(tmp_path: Path) -> None:
    torch.multiprocessing.spawn(
        train_three_steps_on_rank, args=(str(tmp_path / "init"), str(tmp_path / "weights")), nprocs=2
    )
    first, second = (torch.load(tmp_path / f"weights.{rank}") for rank in range(2))
    assert first.keys() == second.keys()
    assert all(torch.equal(first[name], second[name]) for name in first)
    # ADA's r_t pools both ranks' real logits: (6 - 2) / 8 = 0.5 < target 0.6, so p stays at 0.
    assert first["ada_overfitting"].item() == pytest.approx(0.5)


def torchrun_train(cwd: Path, *overrides: str) -> None:
    """``torchrun --nproc_per_node=2 liver-gan-train ...`` as a user runs it, this checkout's code."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    subprocess.run([*command, "-m", "liver_gan.cli.train", *overrides], cwd=cwd, env=env, check=True)


def tiny_two_rank_run(data_dir: Path, *overrides: str) -> list[str]:
    return [
        *tiny_phantom_overrides(data_dir),
        f"eval.cache_dir={data_dir / 'reference'}",
        "loss=wgan_gp",  # its penalty draws from each rank's stream every step
        "trainer.device=cpu",
        "trainer.deterministic=true",
        "trainer.batch_size=4",
        "trainer.epochs=2",
        "trainer.max_steps=6",
        "trainer.log_every=2",
        *overrides,
    ]


@pytest.fixture(scope="module")
def two_rank_run(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-process gloo run of 6 steps, evaluated on both ranks' samples; its run dir."""
    cwd = tmp_path_factory.mktemp("two_ranks")
    weights = Path(os.environ["TORCH_HOME"]) / "hub" / "checkpoints" / "pt_inception-2015-12-05-6726825d.pth"
    if not weights.exists():
        pytest.skip("no offline copy of the Inception weights in $TORCH_HOME or ../shared/fid/")
    evaluation = [f"eval.inception_weights={weights}", "eval.num_samples=9", "eval.max_real=8"]
    torchrun_train(cwd, *tiny_two_rank_run(data_dir, *evaluation))
    assert [path.name for path in (cwd / "outputs").iterdir()] == ["train"]
    [run_dir] = (cwd / "outputs" / "train").iterdir()
    return run_dir


@pytest.mark.slow
def test_a_two_process_gloo_run_is_one_run(two_rank_run: Path) -> None:
    """torchrun --nproc_per_node=2 liver-gan-train: one run dir, one TensorBoard log, one metrics.json
    (world_size 2, evaluated on both ranks' samples), a checkpoint with both ranks' noise streams
    that one process loads and samples."""
    [events] = (two_rank_run / "tb").iterdir()
    # events.out.tfevents.<time>.<host>.<pid>.<n>: one process wrote them all (the HPARAMS file is its second)
    assert len({path.name.rsplit(".", 2)[1] for path in events.glob("events.out.tfevents.*")}) == 1
    metrics = json.loads((two_rank_run / "metrics.json").read_text())
    assert (metrics["status"], metrics["world_size"], metrics["steps"]) == ("completed", 2, 6)
    assert metrics["num_fake"] == 9  # 5 generated on rank 0, 4 on rank 1
    assert "world_size 2" in (two_rank_run / "train.log").read_text()

    state = load_checkpoint(two_rank_run / "checkpoints" / "last.pt")
    streams = state["rng"]["ranks"]
    assert len(streams) == 2 and not torch.equal(streams[0]["torch"], streams[1]["torch"])
    generator, _ = load_generator(two_rank_run, torch.device("cpu"))
    images = generate(generator, 3, "cpu", seed=0)
    assert images.shape == (3, 1, 32, 32) and torch.isfinite(images).all()


@pytest.mark.slow
def test_two_ranks_train_the_weights_one_process_trains(compose_config, data_dir: Path, tmp_path: Path) -> None:
    """Deterministic mode, the thesis MLP (no BatchNorm), global batch 4: 3 steps on 2 gloo ranks
    (2 slices each) end at the weights of 3 steps in one process, within float tolerance: the
    all-reduce sums the ranks' gradients in another order than one process's batch mean (measured:
    at most 1.5e-6 apart), while other noise would move weights by Adam's step, about lr = 2e-4."""
    phantom = [override for override in tiny_phantom_overrides(data_dir) if not override.startswith("model")]
    overrides = [
        "experiment=thesis",
        *phantom,
        "trainer.device=cpu",
        "trainer.deterministic=true",
        "trainer.batch_size=4",
        "trainer.max_steps=3",
        "eval.enabled=false",
    ]
    torchrun_train(tmp_path, *overrides, f"hydra.run.dir={tmp_path / 'two_ranks'}")
    train(compose_config(overrides, hydra=False), tmp_path / "one_process")
    two_ranks, one_process = (
        load_checkpoint(tmp_path / name / "checkpoints" / "last.pt") for name in ("two_ranks", "one_process")
    )
    assert two_ranks["step"] == one_process["step"] == 3
    for network in ("generator", "discriminator"):
        for name, tensor in one_process[network].items():
            torch.testing.assert_close(two_ranks[network][name], tensor, rtol=0, atol=1e-5, msg=f"{network}.{name}")


@pytest.mark.slow
def test_a_two_rank_run_resumes_exactly_on_two_ranks(two_rank_run: Path, data_dir: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "capped"
    torchrun_train(tmp_path, *tiny_two_rank_run(data_dir, "eval.enabled=false", "trainer.max_steps=3"), f"hydra.run.dir={run_dir}")
    torchrun_train(tmp_path, f"hydra.run.dir={run_dir}", "trainer.resume=auto", "trainer.max_steps=6")
    resumed = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    reference = load_checkpoint(two_rank_run / "checkpoints" / "last.pt")
    assert resumed["step"] == reference["step"] == 6
    for network in ("generator", "discriminator"):
        for name, tensor in reference[network].items():
            assert torch.equal(resumed[network][name], tensor), f"{network}.{name}"
    for rank in range(2):
        assert torch.equal(resumed["rng"]["ranks"][rank]["torch"], reference["rng"]["ranks"][rank]["torch"])


@pytest.mark.slow
def test_a_two_rank_checkpoint_continues_in_one_process_with_a_warning(
    two_rank_run: Path, compose_config, data_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run_dir = tmp_path / "continued"
    (run_dir / "checkpoints").mkdir(parents=True)
    shutil.copy(two_rank_run / "checkpoints" / "last.pt", run_dir / "checkpoints" / "last.pt")
    overrides = tiny_two_rank_run(data_dir, "eval.enabled=false", "trainer.max_steps=7", "trainer.resume=auto")
    cfg = compose_config(overrides, hydra=False)
    with caplog.at_level(logging.WARNING):
        metrics = train(cfg, run_dir)
    assert (metrics["steps"], metrics["world_size"]) == (7, 1)
    assert "written by 2 rank(s) and this run has 1" in caplog.text


@pytest.mark.slow
def test_the_submitit_launcher_runs_one_job_on_two_tasks(data_dir: Path, tmp_path: Path) -> None:
    """hydra.launcher.tasks_per_node=2, as on SLURM, through submitit's local executor: the two tasks
    join through TorchDistributedEnvironment (no torchrun) and write one run."""
    sweep = tmp_path / "sweep"
    launcher = ["hydra/launcher=submitit_local", "hydra.launcher.tasks_per_node=2"]
    overrides = tiny_two_rank_run(data_dir, "eval.enabled=false", "trainer.max_steps=2")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "liver_gan.cli.train", "-m", *launcher, f"hydra.sweep.dir={sweep}"]
    subprocess.run([*command, "hydra.sweep.subdir=job", *overrides], cwd=tmp_path, env=env, check=True)
    assert sorted(path.name for path in sweep.iterdir()) == [".submitit", "job", "multirun.yaml"]
    metrics = json.loads((sweep / "job" / "metrics.json").read_text())
    assert (metrics["status"], metrics["world_size"], metrics["steps"]) == ("completed", 2, 2)
