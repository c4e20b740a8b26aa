"""The GPU check (issue 23): every CUDA test and the GPU rows of BENCHMARKS.md in one run of at most
8 minutes on one H100, or, with ``--dry-run``, every stage at its smallest size on the CPU.

    benchmarks/gpu_check.sh                 # on a GPU machine: venv, install, weights, then this
    python benchmarks/gpu_check.py --dry-run --out DIR [--fail-stage NAME]

Each stage runs in its own process under its own time budget (``STAGES``); a stage that fails or
runs out of time is recorded with the end of its output, and the next stage runs.  The results go
to ``--out`` (default ``$OUT``): ``gpu_check.json``, ``gpu_check.md`` (a fragment for BENCHMARKS.md's
GPU section, naming the card), ``gpu_check.log`` (every stage's output) and the quality arms' grids.
``--fail-stage NAME`` makes that stage fail on purpose, to show that the others still run.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.flop_counter import FlopCounterMode

from liver_gan.atomic import atomic_write_text
from liver_gan.device import process_group_backend

BENCHMARKS = Path(__file__).resolve().parent
REPO = BENCHMARKS.parent
# One H100, at most 8 minutes in all: gpu_check.sh's venv, offline install and weights, then the stages.
SETUP_SECONDS = 40
TOTAL_SECONDS = 480
# A dry run's stage takes 10-60 s on two idle cores; shared cores (CI, seven sessions on one host) are
# several times slower, and a dry run proves the script, not its speed.
DRY_SECONDS = 300


@dataclass(frozen=True)
class Stage:
    name: str
    seconds: int  # the budget on one H100
    dry_seconds: int  # the budget of the dry run on the CPU
    what: str


STAGES = (
    Stage("tests", 55, DRY_SECONDS, "every CUDA test and the CUDA-relevant test modules: pass/fail/skip counts"),
    Stage("training", 60, DRY_SECONDS, "training images/s per model at 64/128/256 px, fp32 and trainer.amp=bf16"),
    Stage("fid", 25, DRY_SECONDS, "Inception images/s and the FID on the GPU against the CPU's on the same images"),
    Stage("ddpm", 15, DRY_SECONDS, "DDIM sampling images/s at 10, 20 and 50 steps"),
    Stage("thesis", 15, DRY_SECONDS, "the thesis MLP loop's steps/s on the GPU against this machine's CPU"),
    Stage("torchrun", 20, DRY_SECONDS, "a 1-GPU torchrun launch: an NCCL all-reduce and a few training steps"),
    Stage("quality", 250, DRY_SECONDS, "3-minute time-to-quality arms side by side: FID and KID on 1,024 samples, grids"),
)
assert SETUP_SECONDS + sum(stage.seconds for stage in STAGES) <= TOTAL_SECONDS

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


def step_gflop(loop: Callable[[int], None]) -> float:
    """GFLOP of the loop's next step (convolutions and matmuls, as torch counts them)."""
    counter = FlopCounterMode(display=False)
    with counter:
        loop(1)
    return counter.get_total_flops() / 1e9


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
        [*launch, str(Path(__file__)), "--collective", ctx.device.type], cwd=REPO, capture_output=True, text=True
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
        command = [sys.executable, str(Path(__file__)), "--arm", str(index), "--result", str(result),
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

    from liver_gan.training.loop import last_sample_grid, train

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
assert list(STAGE_FUNCTIONS) == [stage.name for stage in STAGES]


# --- the driver: each stage in its own process group, under its budget ------------------------


def run_stage(stage: Stage, args: argparse.Namespace, workdir: Path, log: Any) -> dict[str, Any]:
    """One stage in a child process; its record whatever happens to it."""
    result = workdir / f"{stage.name}.json"
    budget = stage.dry_seconds if args.dry_run else stage.seconds
    command = [sys.executable, str(Path(__file__)), "--stage", stage.name, "--result", str(result),
               "--workdir", str(workdir / stage.name), "--out", str(args.out)]
    command += ["--dry-run"] if args.dry_run else []
    command += ["--fail"] if stage.name == args.fail_stage else []
    print(f"[{stage.name}] {stage.what} (budget {budget} s)", flush=True)
    log.write(f"\n===== {stage.name}: {shlex.join(command)}\n")
    log.flush()
    start = time.perf_counter()
    # A process group of its own: a stage out of time is killed with everything it started.
    child = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        returncode = child.wait(timeout=budget)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
        returncode = None
    seconds = time.perf_counter() - start
    record: dict[str, Any] = {"stage": stage.name, "budget_s": budget, "seconds": round(seconds, 1), "rows": []}
    if result.is_file():
        record.update(json.loads(result.read_text()))
    if returncode is None:
        record["status"] = "timed out"
    elif returncode != 0:
        record["status"] = "failed"
    else:
        record.setdefault("status", "ok")
    if record["status"] != "ok" and "error" not in record:
        record["error"] = f"exit code {returncode}; see gpu_check.log" if returncode is not None else f"over its {budget} s"
    print(f"[{stage.name}] {record['status']} in {seconds:.0f} s{': ' + record['error'] if 'error' in record else ''}",
          flush=True)
    return record


def stage_main(args: argparse.Namespace) -> int:
    """Inside a stage's process: run it and write its rows (also when it fails part-way)."""
    ctx = Context(args.dry_run, args.workdir, args.out, args.result)
    ctx.workdir.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {"rows": []}
    try:
        if args.fail:
            raise RuntimeError(f"deliberately failed (--fail-stage {args.stage})")
        record["rows"], passed = STAGE_FUNCTIONS[args.stage](ctx)
        record["status"] = "ok" if passed else "failed"
        if not passed:
            record["error"] = "a check in this stage did not pass: see its rows"
    except Exception as error:  # recorded, so that the driver reports it and goes on
        record.update(status="failed", error=f"{type(error).__name__}: {error}")
        atomic_write_text(args.result, json.dumps(record))
        raise
    atomic_write_text(args.result, json.dumps(record))
    return 0 if record["status"] == "ok" else 1


def machine() -> dict[str, str]:
    """The card, the driver and the versions, for the results' heading."""
    info = {"torch": torch.__version__, "cuda": str(torch.version.cuda), "python": sys.version.split()[0]}
    info["card"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (CPU dry run)"
    if shutil.which("nvidia-smi"):
        query = ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"]
        info["nvidia-smi"] = subprocess.run(query, capture_output=True, text=True).stdout.strip()
    info["cpu cores"] = str(os.cpu_count())
    return info


def markdown(records: Sequence[dict[str, Any]], info: dict[str, str], dry_run: bool, command: str) -> str:
    """A fragment for BENCHMARKS.md's GPU section: the stages, then every measured row."""
    title = "dry run on the CPU (sizes tiny: proves the script, measures nothing)" if dry_run else info["card"]
    lines = [
        f"### GPU check: {title}",
        "",
        f"`{command}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: torch {info['torch']}, "
        f"CUDA {info['cuda']}, {info.get('nvidia-smi', 'no nvidia-smi')}, {info['cpu cores']} CPU cores.",
        "",
        "| stage | status | seconds (budget) |",
        "|---|---|---|",
    ]
    for record in records:
        status = record["status"] + (f": {record['error']}" if "error" in record else "")
        lines.append(f"| {record['stage']} | {status} | {record['seconds']:.0f} ({record['budget_s']}) |")
    lines += ["", "| stage | row | value | unit | note |", "|---|---|---|---|---|"]
    for record in records:
        for item in record["rows"]:
            value = "-" if item["value"] is None else f"{item['value']:.4g}"
            lines.append(f"| {record['stage']} | {item['row']} | {value} | {item['unit']} | {item['note']} |")
    return "\n".join(lines) + "\n"


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="every stage at its smallest size on the CPU")
    parser.add_argument("--out", type=Path, default=os.environ.get("OUT"), help="results folder (default $OUT)")
    parser.add_argument("--only", nargs="+", choices=list(STAGE_FUNCTIONS), metavar="STAGE", help="run only these stages")
    parser.add_argument("--fail-stage", choices=list(STAGE_FUNCTIONS), help="make this stage fail on purpose")
    # Inside the child processes:
    parser.add_argument("--stage", choices=list(STAGE_FUNCTIONS), help=argparse.SUPPRESS)
    parser.add_argument("--arm", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--collective", choices=["cpu", "cuda"], help=argparse.SUPPRESS)
    parser.add_argument("--fail", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.out is None and args.collective is None:
        parser.error("give --out DIR (or set $OUT)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    if args.collective:
        return all_reduce_check(args.collective)
    if args.arm is not None:
        metrics = run_arm(Context(args.dry_run, args.workdir, args.out), args.arm)
        atomic_write_text(args.result, json.dumps(metrics))
        return 0
    if args.stage:
        return stage_main(args)
    if not args.dry_run and not torch.cuda.is_available():
        print("gpu_check: no GPU visible; on a CPU run benchmarks/gpu_check.sh --dry-run", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    info = machine()
    print(json.dumps(info), flush=True)
    records = []
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as workdir, open(args.out / "gpu_check.log", "a") as log:
        for stage in STAGES:
            if not args.only or stage.name in args.only:
                records.append(run_stage(stage, args, Path(workdir), log))
    command = shlex.join(["benchmarks/gpu_check.sh", *argv])
    results = {"machine": info, "dry_run": args.dry_run, "command": command, "stages": records}
    atomic_write_text(args.out / "gpu_check.json", json.dumps(results, indent=2) + "\n")
    atomic_write_text(args.out / "gpu_check.md", markdown(records, info, args.dry_run, command))
    print(markdown(records, info, args.dry_run, command))
    return 0 if all(record["status"] == "ok" for record in records) else 1


if __name__ == "__main__":
    sys.path.insert(0, str(BENCHMARKS))  # the sibling benchmark modules, as run.py imports them
    sys.exit(main())
