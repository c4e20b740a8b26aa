"""The stages of the GPU check (benchmarks/gpu_check.py, issue 23), each run in its own process.

A stage takes a :class:`Context` (the dry run or the real one, its device, where it may write) and
returns its rows and whether every check in it passed.  The real sizes are for one H100; the dry
run's are the smallest that still run every line of the stage on the CPU.  The stages reuse the
benchmarks' own measurements (training.py, fid.py, ddpm.py, quality.py, measure.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from liver_gan.atomic import atomic_write_text
from liver_gan.device import process_group_backend

REPO = Path(__file__).resolve().parents[1]
GPU_CHECK = Path(__file__).resolve().with_name("gpu_check.py")  # the stages' children run its hidden modes

# The CUDA tests (skipped without a GPU) and the modules whose code branches on the device.
CUDA_TESTS = (
    "tests/test_cuda.py",
    "tests/test_device.py",
    "tests/test_device_selection.py",
    "tests/test_device_images.py",
    "tests/test_fid.py::test_fid_on_cuda_equals_the_cpu_within_a_thousandth",
    "tests/test_memorisation.py::test_the_search_on_cuda_equals_the_cpu",
)
DRY_TESTS = ("tests/test_device.py",)

# (label, overrides): each model as its group option or preset gives it.
TRAINING_MODELS = (
    ("model=mlp", ("~experiment", "model=mlp")),
    ("model=dcgan", ("~experiment", "model=dcgan")),
    ("model=stylegan2", ("~experiment", "model=stylegan2")),
    ("experiment=stylegan2_gpu (paper widths)", ("experiment=stylegan2_gpu",)),
    ("model=ddpm", ("~experiment", "model=ddpm")),
)
DRY_TRAINING_MODELS = TRAINING_MODELS[:2]
RESOLUTIONS = (64, 128, 256)
DDIM_STEPS = (10, 20, 50)
FID_IMAGES = 128  # per set: two sets, embedded on both devices

# The quality arms: the default run's DCGAN, the stylegan2 preset at GPU widths, ddpm (quality.py's arms).
QUALITY_ARMS = (
    ("DCGAN (experiment=quickstart's model and loss, trainer.ema_kimg=null)", ("trainer.ema_kimg=null",), "dcgan"),
    ("stylegan2 at GPU widths (experiment=stylegan2_gpu)", ("experiment=stylegan2_gpu",), "stylegan2_gpu"),
    ("ddpm (model=ddpm model.sample_steps=20)", ("model=ddpm", "model.sample_steps=20", "trainer.ema_kimg=null"), "ddpm"),
)
QUALITY_MINUTES, QUALITY_SAMPLES = 3.0, 1024
DRY_QUALITY_MINUTES, DRY_QUALITY_SAMPLES = 0.05, 8

# The dry run's data and widths: six 64-pixel phantom patients at 32 px, tiny networks, tiny KID.
DRY_PHANTOM = (
    "dataset.resolution=32",
    "dataset.val_fraction=0.34",
    "dataset.num_workers=1",
    "dataset.phantom.num_volumes=6",
    "dataset.phantom.in_plane=64",
    "dataset.phantom.min_slices=16",
    "dataset.phantom.max_slices=20",
)
DRY_WIDTHS = {
    "dcgan": ("model.generator_channels=4", "model.discriminator_channels=4"),
    "stylegan2_gpu": ("model.channel_base=64", "model.channel_max=8", "trainer.amp=false", "trainer.batch_size=8"),
    "ddpm": (
        "model.channels=[8,8]",
        "model.attention_levels=[false,true]",
        "model.norm_num_groups=4",
        "model.num_head_channels=8",
        "model.num_train_timesteps=50",
        "model.sample_steps=2",
    ),
}
DRY_EVAL = ("eval.max_real=8", "eval.kid.num_subsets=2", "eval.kid.subset_size=4")


@dataclass(frozen=True)
class Context:
    """What every stage is given: the size of the run, its device and where it may write."""

    dry_run: bool
    workdir: Path  # phantoms, caches, run dirs: deleted with the run
    out: Path  # what comes back: results and grids
    result: Path | None = None  # the stage's record, rewritten as rows come in

    def save_partial(self, rows: Rows) -> None:
        """The rows so far, so that a stage killed at its budget keeps what it measured."""
        if self.result is not None:
            atomic_write_text(self.result, json.dumps({"rows": rows, "status": "running"}))

    @property
    def device(self) -> torch.device:
        return torch.device("cpu" if self.dry_run else "cuda")

    def size(self, real: Any, dry: Any) -> Any:
        return dry if self.dry_run else real


Rows = list[dict[str, Any]]


def row(name: str, value: float | None, unit: str, note: str = "") -> dict[str, Any]:
    return {"row": name, "value": value, "unit": unit, "note": note}


# --- the stages: each returns its rows and whether everything in it passed ---------------------


def stage_tests(ctx: Context) -> tuple[Rows, bool]:
    """pytest on the CUDA tests; counts from its JUnit XML."""
    junit = ctx.workdir / "junit.xml"
    selection = ctx.size(CUDA_TESTS, DRY_TESTS)
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}", *selection]
    completed = subprocess.run(command, cwd=REPO, stdout=sys.stdout, stderr=sys.stderr)
    suite = ElementTree.parse(junit).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    counts = {key: int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")}
    passed = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    rows = [
        row("tests passed", passed, "tests", " ".join(selection)),
        row("tests failed", counts["failures"] + counts["errors"], "tests"),
        row("tests skipped", counts["skipped"], "tests"),
    ]
    return rows, completed.returncode == 0


def stage_training(ctx: Context) -> tuple[Rows, bool]:
    """Each model's training images/s through the shared loop's family step (training.family_loop)."""
    from configs import compose_config, workdir_overrides
    from training import family_loop, time_loop

    batch, steps, repeats = ctx.size((64, 5, 2), (4, 2, 1))
    rows: Rows = []
    for resolution in ctx.size(RESOLUTIONS, (32,)):
        images = (torch.rand(4 * batch, 1, resolution, resolution) * 2 - 1).to(ctx.device)
        for label, overrides in ctx.size(TRAINING_MODELS, DRY_TRAINING_MODELS):
            cfg = compose_config(
                [
                    *overrides,
                    f"dataset.resolution={resolution}",
                    f"trainer.device={ctx.device.type}",
                    f"trainer.batch_size={batch}",
                    *workdir_overrides(ctx.workdir),
                ]
            )
            for amp in (False, True):
                name = f"{label} at {resolution}x{resolution}, {'bf16' if amp else 'fp32'}, batch {batch}"
                loop = family_loop(cfg, images, ctx.device, amp)
                rate = max(time_loop(loop, steps, repeats)) * batch
                gflop = step_gflop(loop) / batch
                note = f"best of {repeats} x {steps} steps; {gflop:.3g} GFLOP/image/step, {rate * gflop / 1e3:.3g} TFLOP/s"
                rows.append(row(name, rate, "images/s", note))
                ctx.save_partial(rows)
                print(f"  {name}: {rate:.1f} images/s", flush=True)
    return rows, True


class FlopCount(TorchDispatchMode):
    """The FLOPs of every operator torch has a formula for (torch.utils.flop_counter's registry:
    convolutions and matmuls), forward and backward. FlopCounterMode itself tracks modules with
    backward hooks, which a GAN step's R1 penalty (autograd.grad with create_graph) refuses."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.total += formula(*args, **kwargs, out_val=out)
        return out


def step_gflop(loop: Callable[[int], None]) -> float:
    """GFLOP of the loop's next step (convolutions and matmuls, as torch counts them)."""
    with FlopCount() as counter:
        loop(1)
    return counter.total / 1e9


def stage_fid(ctx: Context) -> tuple[Rows, bool]:
    """Inception images/s per device, and the FID of the same two image sets on the CPU and the GPU."""
    from fid import generated_images, inception_weights
    from measure import seconds_of

    from liver_gan.metrics.fid import frechet_distance
    from liver_gan.metrics.inception import load_feature_extractor

    count, batch = ctx.size((FID_IMAGES, 128), (4, 4))
    sets = [generated_images(count, seed) for seed in (0, 1)]
    devices = ("cpu", ctx.device.type)
    fids, rows = [], []
    for device in devices:
        extractor = load_feature_extractor(inception_weights(), device)
        features = [extractor.features(sets[0], batch)]  # also the warm-up (cuDNN picks its kernels)
        seconds = seconds_of(lambda: features.append(extractor.features(sets[1], batch)))()
        rows.append(row(f"Inception on {device}, batch {batch}", count / seconds, "images/s", f"{count} images"))
        fids.append(frechet_distance(*features))
        rows.append(row(f"FID of 2 x {count} generated images on {device}", fids[-1], "FID"))
        ctx.save_partial(rows)
    difference = abs(fids[1] - fids[0]) / fids[0]
    agreed = difference <= 1e-3
    rows.append(row(f"relative FID difference, {devices[1]} vs cpu", difference, "", "goal <= 0.001"))
    return rows, agreed


def stage_ddpm(ctx: Context) -> tuple[Rows, bool]:
    """DDIM sampling images/s of the default U-Net, per step count."""
    from ddpm import ddpm_config
    from measure import rates, repeat_seconds

    from liver_gan.training.diffusion_step import build_training

    resolution, batch, repeats = ctx.size((64, 256, 2), (32, 2, 1))
    cfg = ddpm_config(ctx.workdir, resolution)
    torch.manual_seed(cfg.seed)
    model = build_training(cfg, ctx.device).generator.eval()
    rows = []
    for steps in ctx.size(DDIM_STEPS, (2,)):
        with torch.no_grad():
            seconds = repeat_seconds(lambda: model.sample(batch, seed=0, sample_steps=steps), repeats)
        name = f"DDIM sampling, {steps} steps, {resolution}x{resolution}, batch {batch}"
        rows.append(row(name, max(rates(batch, seconds)), "images/s"))
    return rows, True


def stage_thesis(ctx: Context) -> tuple[Rows, bool]:
    """The thesis MLP's steps/s through loop.py's step (training.liver_gan_loop) on the GPU and the CPU."""
    from thesis_pipeline import THESIS_SLICES
    from training import liver_gan_loop, thesis_config, time_loop

    slices, steps, repeats = ctx.size((THESIS_SLICES, 100, 2), (256, 3, 1))
    cfg = thesis_config(ctx.workdir)
    images = torch.rand(slices, 1, 64, 64) * 2 - 1
    measured = [
        max(time_loop(liver_gan_loop(cfg, images.to(device), device=device), steps, repeats))
        for device in (ctx.device, torch.device("cpu"))
    ]
    labels = (ctx.device.type, f"cpu ({torch.get_num_threads()} threads)")
    rows = [row(f"thesis MLP loop, batch 64, on {label}", rate, "steps/s") for label, rate in zip(labels, measured)]
    rows.append(row(f"thesis MLP loop: {ctx.device.type} / cpu", measured[0] / measured[1], "x"))
    return rows, True


def stage_torchrun(ctx: Context) -> tuple[Rows, bool]:
    """torchrun with one process: an all-reduce on the backend liver-gan picks (NCCL on a GPU, gloo
    on the CPU), then ``liver-gan-train`` for a few steps on a tiny phantom."""
    from configs import workdir_overrides

    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1"]
    collective = subprocess.run(
        [*launch, str(GPU_CHECK), "--collective", ctx.device.type], cwd=REPO, capture_output=True, text=True
    )
    print(collective.stdout + collective.stderr, flush=True)
    backend = next((line.split("=", 1)[1] for line in collective.stdout.splitlines() if line.startswith("backend=")), None)
    run_dir = ctx.workdir / "torchrun_run"
    trainer = ctx.size(["trainer=gpu"], ["trainer.device=cpu"])
    overrides = [
        "~experiment",
        "model=mlp",
        *workdir_overrides(ctx.workdir, phantom="phantom_tiny"),
        *DRY_PHANTOM,
        *trainer,
        "trainer.batch_size=8",
        "trainer.max_steps=5",
        "eval.enabled=false",
        f"hydra.run.dir={run_dir}",
    ]
    training = subprocess.run([*launch, "-m", "liver_gan.cli.train", *overrides], cwd=REPO)
    metrics_file = run_dir / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    rows = [
        row("torchrun all-reduce", float(collective.returncode == 0), "ok", f"backend {backend}"),
        row("torchrun liver-gan-train, 5 steps", metrics.get("steps"), "steps", f"status {metrics.get('status')}"),
    ]
    return rows, collective.returncode == 0 and training.returncode == 0 and metrics.get("steps") == 5


def all_reduce_check(device_type: str) -> int:
    """Under torchrun: one all-reduce of a tensor on this rank's device through liver-gan's backend."""
    backend = process_group_backend(torch.cuda.is_available())
    dist.init_process_group(backend)
    device = torch.device(device_type, int(os.environ["LOCAL_RANK"])) if device_type == "cuda" else torch.device("cpu")
    value = torch.ones(4, device=device) * (dist.get_rank() + 1)
    dist.all_reduce(value)
    used = dist.get_backend() if device_type == "cpu" else dist.get_backend(dist.group.WORLD)
    print(f"backend={backend} (all_reduce of a {device.type} tensor: {used})")
    ok = bool(torch.all(value == dist.get_world_size() * (dist.get_world_size() + 1) / 2))
    dist.destroy_process_group()
    return 0 if ok else 1


def stage_quality(ctx: Context) -> tuple[Rows, bool]:
    """The arms, side by side on the one device (so that three 3-minute arms fit the 8 minutes)."""
    from configs import compose_config, workdir_overrides

    from liver_gan.data.dataset import prepare_dataset

    # The dataset once, before the arms start: they share its cache.
    cfg = compose_config([*workdir_overrides(ctx.workdir), "dataset.subset=tumor", "dataset.resolution=64",
                          *ctx.size((), DRY_PHANTOM)])
    prepare_dataset(cfg.dataset, cfg.seed)
    arms = []
    for index, _ in enumerate(QUALITY_ARMS):
        result = ctx.workdir / f"arm{index}.json"
        command = [sys.executable, str(GPU_CHECK), "--arm", str(index), "--result", str(result),
                   "--workdir", str(ctx.workdir), "--out", str(ctx.out), *(["--dry-run"] if ctx.dry_run else [])]
        # On shared CPU cores three arms with a thread per core each would oversubscribe them.
        threads = {} if not ctx.dry_run else {"OMP_NUM_THREADS": "1"}
        arms.append((subprocess.Popen(command, cwd=REPO, env={**os.environ, **threads}), result))
    rows, ok = [], True
    for (process, result), (label, _, _) in zip(arms, QUALITY_ARMS):
        if process.wait() != 0 or not result.is_file():
            rows.append(row(label, None, "FID", "failed: see gpu_check.log"))
            ok = False
            continue
        metrics = json.loads(result.read_text())
        note = f"KID x 1000 {metrics['kid_mean'] * 1000:.1f}, {metrics['steps']} steps, grid {metrics['grid']}"
        rows.append(row(label, metrics["fid"], "FID", note))
    return rows, ok


def run_arm(ctx: Context, index: int) -> dict[str, Any]:
    """One quality arm (quality.arm_config): train, evaluate, keep the last grid under ``out/grids``."""
    from quality import arm_config

    from liver_gan.training.loop import train
    from liver_gan.training.outcome import last_sample_grid

    label, overrides, slug = QUALITY_ARMS[index]
    minutes, samples = ctx.size((QUALITY_MINUTES, QUALITY_SAMPLES), (DRY_QUALITY_MINUTES, DRY_QUALITY_SAMPLES))
    extra = ctx.size((), (*DRY_PHANTOM, *DRY_WIDTHS[slug], *DRY_EVAL))
    cfg = arm_config(overrides, ctx.workdir, minutes, samples, ctx.device.type, *extra)
    run_dir = ctx.workdir / f"quality-{slug}"
    metrics = train(cfg, run_dir)
    grid = last_sample_grid(run_dir)
    kept = ctx.out / "grids" / f"{slug}.png"
    kept.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(grid, kept)
    return {**metrics, "grid": f"grids/{kept.name}"}


STAGE_FUNCTIONS: dict[str, Callable[[Context], tuple[Rows, bool]]] = {
    "tests": stage_tests,
    "training": stage_training,
    "fid": stage_fid,
    "ddpm": stage_ddpm,
    "thesis": stage_thesis,
    "torchrun": stage_torchrun,
    "quality": stage_quality,
}
