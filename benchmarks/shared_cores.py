"""Two runs sharing the cores (issue 25): aggregate training images/s of two concurrent default
runs against one run alone, with every process taking all cores (torch's default, the "before")
and with ``trainer.num_threads=null`` (each a fair share, the "after").

    python benchmarks/shared_cores.py --steps 150 --workdir outputs/benchmarks/shared_cores

Both runs are launched as ``liver-gan-train`` would be by two users of one workstation, so the
second knows nothing of the first: the "after" arm tells each run that two jobs share the machine
the way a joblib sweep does (``hydra.launcher.n_jobs=2``), here through LOCAL_WORLD_SIZE=2, which
the thread choice reads the same way. Run it on a quiet machine: the figures are only comparable
within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from liver_gan.training.threads import usable_cores

TRAIN = str(Path(sys.executable).with_name("liver-gan-train"))


def start_run(workdir: Path, name: str, steps: int, threads: str, concurrent: int) -> subprocess.Popen:
    """One default run (experiment=quickstart) of ``steps`` steps without evaluation."""
    env = {**os.environ, "LOCAL_WORLD_SIZE": str(concurrent)} if threads == "null" else dict(os.environ)
    overrides = [
        f"trainer.max_steps={steps}",
        "eval.enabled=false",
        f"trainer.num_threads={threads}",
        f"dataset.root={workdir / 'phantom'}",
        f"dataset.cache_dir={workdir / 'cache'}",
        f"hydra.run.dir={workdir / 'runs' / name}",
        "trainer.device=cpu",
    ]
    return subprocess.Popen([TRAIN, *overrides], cwd=workdir, env=env, stdout=subprocess.DEVNULL)


def images_per_second(workdir: Path, names: list[str], steps: int, threads: str) -> float:
    """The summed images/s of ``names`` started at once, from their metrics.json."""
    runs = [start_run(workdir, name, steps, threads, len(names)) for name in names]
    if any(run.wait() != 0 for run in runs):
        raise SystemExit(f"a run of {names} failed: see {workdir / 'runs'}")
    return sum(json.loads((workdir / "runs" / name / "metrics.json").read_text())["images_per_second"] for name in names)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=150, help="training steps per run (default 150)")
    parser.add_argument("--workdir", type=Path, default=Path("outputs/benchmarks/shared_cores"))
    args = parser.parse_args(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    images_per_second(args.workdir, ["warmup"], 2, "null")  # the phantom and its cache, built once
    cores = usable_cores()
    print(f"| threads per run | one run, images/s | two at once, images/s (sum) | two / one |  ({cores} cores)")
    print("|---|---|---|---|")
    for label, threads in ((f"all {cores} cores (torch's default)", str(cores)), ("trainer.num_threads=null", "null")):
        alone = images_per_second(args.workdir, [f"alone-{threads}"], args.steps, threads)
        pair = images_per_second(args.workdir, [f"pair-a-{threads}", f"pair-b-{threads}"], args.steps, threads)
        print(f"| {label} | {alone:.1f} | {pair:.1f} | {pair / alone:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
