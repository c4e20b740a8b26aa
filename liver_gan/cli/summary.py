"""``liver-gan-summary DIR``: rank every job under a multirun (or any) directory by FID.

A plain argparse CLI rather than a Hydra app: it takes one positional directory, and a Hydra
app would create a run directory of its own inside the outputs it summarises.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from liver_gan.cli import report_user_errors


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="liver-gan-summary",
        description="Print a table of every job's overrides and metrics under DIR, best FID first "
        "(failed and unfinished jobs last), and write DIR/summary.csv and DIR/summary.md.",
    )
    parser.add_argument("dir", type=Path, metavar="DIR", help="a sweep directory, e.g. outputs/multirun/<date>")
    return parser.parse_args(argv)


@report_user_errors
def main(argv: list[str] | None = None) -> None:
    root = parse_args(argv).dir
    # After parsing: the summary's writers import torch (liver_gan.atomic), which --help does without.
    from liver_gan.sweeps.summary import collect_jobs, format_markdown, write_summary

    jobs = collect_jobs(root)
    print(format_markdown(root, jobs))
    csv_path, md_path = write_summary(root, jobs)
    print(f"Wrote {csv_path} and {md_path}")
