"""``liver-gan-cache list|prune``: the dataset cache and the reference statistics, entry by entry.

``prune`` lists what it would delete and asks first (on a terminal; elsewhere it needs ``--yes``).

A plain argparse CLI rather than a Hydra app, as ``liver-gan-summary``: it reads two folders
and would otherwise make a run directory of its own. The folders default to the configs'
``dataset.cache_dir`` and ``eval.cache_dir``. The caches' code imports torch, so it is imported
only when a command runs: ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from liver_gan.cli import report_user_errors
from liver_gan.data.schema import DatasetConfig
from liver_gan.errors import LiverGanError
from liver_gan.metrics.schema import EvalConfig

if TYPE_CHECKING:
    from liver_gan.caches import Listing


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    folders = argparse.ArgumentParser(add_help=False)
    folders.add_argument(
        "--dataset-cache-dir", type=Path, default=Path(DatasetConfig.cache_dir), help="as dataset.cache_dir"
    )
    folders.add_argument("--eval-cache-dir", type=Path, default=Path(EvalConfig.cache_dir), help="as eval.cache_dir")
    parser = argparse.ArgumentParser(
        prog="liver-gan-cache",
        description="The dataset cache and reference-statistics entries: their size, time since last use and "
        "what each was built from; prune them. An entry being built is never touched.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", parents=[folders], help="one line per entry")
    prune_parser = commands.add_parser("prune", parents=[folders], help="delete entries")
    prune_parser.add_argument("keys", nargs="*", metavar="KEY", help="entries whose key starts with KEY")
    prune_parser.add_argument("--older-than", type=float, metavar="DAYS", help="entries unused for DAYS days")
    prune_parser.add_argument("--all", action="store_true", help="every entry")
    prune_parser.add_argument("--dry-run", action="store_true", help="say what would go, delete nothing")
    prune_parser.add_argument("--yes", action="store_true", help="delete without listing and asking first")
    return parser.parse_args(argv)


@report_user_errors
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from liver_gan.caches import DATASET, REFERENCE, list_cache, prune, select

    now = time.time()
    listings = list_cache(args.dataset_cache_dir, DATASET) + list_cache(args.eval_cache_dir, REFERENCE)
    if args.command == "list":
        _print_table(listings, now)
        return
    if sum((bool(args.keys), args.older_than is not None, args.all)) != 1:
        raise LiverGanError("liver-gan-cache prune: give exactly one of KEY..., --older-than DAYS or --all")
    chosen = select(listings, args.keys, args.older_than, args.all, now)
    if not chosen:
        print("nothing to prune")
        return
    if args.dry_run or not args.yes:
        for listing in chosen:
            print(f"would remove {listing.path}")
        if args.dry_run:
            return
        confirm(len(chosen))
    for listing in chosen:
        if prune(listing):
            print(f"removed {listing.path}")
        else:
            print(f"skipped {listing.path}: it is being built now")


def confirm(count: int) -> None:
    """Ask on a terminal; elsewhere (a script, a pipe) nothing is deleted without --yes."""
    if not sys.stdin.isatty():
        raise LiverGanError(f"liver-gan-cache prune: pass --yes to delete the {count} entries listed above (nothing was deleted)")
    if input(f"delete these {count} entries? [y/N] ").strip().lower() not in ("y", "yes"):
        raise LiverGanError("liver-gan-cache prune: nothing was deleted")


def _print_table(listings: list[Listing], now: float) -> None:
    from liver_gan.caches import HEADER, format_listing

    if not listings:
        print("no cache entries")
        return
    print(HEADER)
    for listing in listings:
        print(format_listing(listing, now))


if __name__ == "__main__":
    main()
