"""liver-gan's benchmark suite: every figure of issue 6, side by side, in one run.

    python benchmarks/run.py                      # the full run (under 20 min on 2 cores)
    python benchmarks/run.py --quick              # a smoke run (under 5 min)
    python benchmarks/run.py --only training fid  # some benchmarks only
    python benchmarks/run.py --markdown results.md   # a new file: the tables to move into BENCHMARKS.md

It prints the results as Markdown tables (min / median / max over the repeats, the ratios against
the issue's goals, and what limits each figure); ``--markdown`` also writes them, with the machine
and the command, as a complete benchmarks page.  It never replaces a file: BENCHMARKS.md also holds
sections written by hand from other scripts (the GPU check, insertion, shared cores), which a
rewrite would lose, so the tables go into a new file and are moved over by hand.  Timings are only comparable within one run on one
quiet machine: run nothing else meanwhile.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path

from liver_gan.atomic import atomic_write_text

from configs import DEFAULT_WORKDIR
from dataset_build import benchmark_dataset
from ddpm import benchmark_ddpm
from fid import benchmark_against_pytorch_fid, benchmark_fid
from measure import Section, format_duration, load_average, machine_info
from quality import benchmark_augment, benchmark_quality
from report import results_markdown
from training import benchmark_models, benchmark_training

MIN_REPEATS = 3


BENCHMARKS: dict[str, Callable[[Path, bool, int], list[Section]]] = {
    "training": benchmark_training,
    "dataset_build": lambda workdir, quick, repeats: [benchmark_dataset(workdir, quick, repeats)],
    "fid": lambda workdir, quick, repeats: [benchmark_fid(quick, repeats), benchmark_against_pytorch_fid(quick, repeats)],
    "models": lambda workdir, quick, repeats: [benchmark_models(workdir, quick, repeats)],
    "quality": benchmark_quality,
    "augment": benchmark_augment,
    "ddpm": lambda workdir, quick, repeats: [benchmark_ddpm(workdir, quick, repeats)],
}

PREAMBLE = """# Benchmarks

Its tables come from `benchmarks/run.py` (issue 6) and, where a section says so, from other
scripts; `python benchmarks/run.py --markdown NEW.md` writes a fresh page (never over an existing
file) to move tables from. How to run, and what each script measures:
[benchmarks/README.md](benchmarks/README.md).

Every row is timed in the same run on the same machine, so the ratios compare like with like.
The thesis pipeline is the baseline for training: the thesis's own steps (512x512 PNGs from
`liver-gan-prepare export=imagefolder`, ImageFolder, DataLoader, Table-2 MLP, BCE, default Adam).
"""


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small workloads: a smoke run in under 5 minutes")
    parser.add_argument(
        "--repeats", type=int, default=MIN_REPEATS, help=f"timed repeats per figure (default {MIN_REPEATS})"
    )
    parser.add_argument(
        "--only", nargs="+", choices=sorted(BENCHMARKS), metavar="NAME", help=f"run only these: {', '.join(BENCHMARKS)}"
    )
    parser.add_argument(
        "--markdown", type=Path, metavar="FILE", help="also write the results as FILE, a new file (never replaced)"
    )
    parser.add_argument(
        "--workdir", type=Path, default=DEFAULT_WORKDIR, help="phantoms, caches and PNG exports (reused across runs)"
    )
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.markdown is not None and args.markdown.exists():
        parser.error(
            f"--markdown {args.markdown}: that file exists, and its hand-written sections would be lost; "
            "name a new file and move its tables over"
        )
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.repeats < MIN_REPEATS:
        print(f"note: {args.repeats} repeats; published figures use at least {MIN_REPEATS}", file=sys.stderr)
    machine = machine_info()
    args.workdir.mkdir(parents=True, exist_ok=True)
    sections: list[Section] = []
    for name in args.only or list(BENCHMARKS):
        print(f"[{name}] running{' (quick)' if args.quick else ''} ...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        sections += BENCHMARKS[name](args.workdir, args.quick, args.repeats)
        print(f"[{name}] done in {format_duration(time.perf_counter() - start)}", file=sys.stderr, flush=True)
    machine.append(("load average at the end (1/5/15 min)", load_average()))
    command = shlex.join(["python", "benchmarks/run.py", *argv])
    results = results_markdown(sections, machine, command, args.repeats)
    print(results)
    if args.markdown and args.markdown.exists():  # made while the benchmarks ran: the tables above stand
        print(f"--markdown {args.markdown}: that file appeared meanwhile; not replaced (the results are above)", file=sys.stderr)
        return 1
    if args.markdown:
        atomic_write_text(args.markdown, PREAMBLE + "\n" + results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
