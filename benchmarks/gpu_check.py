"""The GPU check (issue 23): every CUDA test and the GPU rows of BENCHMARKS.md in one run of at most
8 minutes on one H100, or, with ``--dry-run``, every stage at its smallest size on the CPU.

    benchmarks/gpu_check.sh                 # on a GPU machine: venv, install, weights, then this
    python benchmarks/gpu_check.py --dry-run --out DIR [--fail-stage NAME]

Each stage runs in its own process under its own time budget (``STAGES``); a stage that fails or
runs out of time is recorded with the end of its output, and the next stage runs.  The results go
to ``--out`` (default ``$OUT``): ``gpu_check.json``, ``gpu_check.md`` (a fragment for BENCHMARKS.md's
GPU section, naming the card), ``gpu_check.log`` (every stage's output) and the quality arms' grids.
``--fail-stage NAME`` makes that stage fail on purpose once it has run, to show that the others still run.
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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from liver_gan.atomic import atomic_write_text

from gpu_stages import REPO, STAGE_FUNCTIONS, Context, all_reduce_check, run_arm

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
        record["rows"], passed = STAGE_FUNCTIONS[args.stage](ctx)
        if args.fail:  # after the stage's own work, so that the dry run still runs all of it
            raise RuntimeError(f"deliberately failed (--fail-stage {args.stage})")
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
    sys.exit(main())
