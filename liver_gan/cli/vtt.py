"""``liver-gan-vtt``: a visual Turing test for readers, in two steps.

    liver-gan-vtt make --generator RUN_DIR_OR_PT [--num 40] [--out DIR]
    liver-gan-vtt make --fake-dir FAKES --real-dir REALS
    liver-gan-vtt score answers.json --key DIR/key.json

``make`` writes ``vtt.html`` (send it to the reader) and ``key.json`` (keep it). ``score`` checks the
``answers.json`` the page exported against the key. Two subcommands with a positional file fit
argparse better than a Hydra app, which has no subcommands.

The commands' modules import torch, so each is imported inside the function that uses it: the
parser, and with it ``--help``, imports none of them.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from liver_gan.cli import report_user_errors
from liver_gan.errors import LiverGanError

if TYPE_CHECKING:
    from torch import Tensor

    from liver_gan.vtt.page import VisualTuringTest

# liver_gan.vtt.page.Upscaling's values, named here so that the parser imports no torch.
UPSCALING = ("nearest", "smooth")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="liver-gan-vtt", description="A visual Turing test of real vs synthetic slices.")
    commands = parser.add_subparsers(dest="command", required=True)

    make = commands.add_parser("make", help="write vtt.html and its separate key.json")
    fakes = make.add_mutually_exclusive_group(required=True)
    fakes.add_argument("--generator", type=Path, help="a liver-gan-train run dir or checkpoint to sample from")
    fakes.add_argument("--fake-dir", type=Path, help="a folder of synthetic slice images")
    make.add_argument("--real-dir", type=Path, help="a folder of real slices (default: the run's validation split)")
    make.add_argument("--num", type=int, default=40, help="slices on the page, half real and half synthetic (default 40)")
    make.add_argument("--seed", type=int, default=0, help="which slices are drawn, the noise and the page order")
    make.add_argument("--size", type=int, default=512, help="displayed width and height in pixels (default 512)")
    make.add_argument("--upscaling", choices=UPSCALING, default=UPSCALING[0])
    make.add_argument("--out", type=Path, help="output folder (default outputs/vtt/<date_time>)")
    make.add_argument("--device", default="auto", help="auto, cpu or cuda[:N], for sampling")
    make.add_argument("--dataset-root", help="the run's data, where the checkpoint's dataset.root does not hold it")
    make.add_argument("--dataset-cache-dir", help="the dataset cache to use (default: the run's, if it holds the data)")

    score = commands.add_parser("score", help="score an answers.json exported by the page")
    score.add_argument("answers", type=Path, help="the answers.json the reader exported")
    score.add_argument("--key", type=Path, required=True, help="the key.json written beside vtt.html")
    score.add_argument("--confidence", type=float, default=0.95, help="confidence level of the intervals (default 0.95)")
    score.add_argument("--json", type=Path, help="also write the scores to this JSON file")
    return parser.parse_args(argv)


def choose(images: Tensor, count: int, seed: int, what: str) -> Tensor:
    """``count`` images drawn at random (seeded) without replacement, in drawing order."""
    import torch

    if count > len(images):
        raise LiverGanError(f"{what} has {len(images)} slices, fewer than the {count} needed; lower --num")
    return images[torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:count]]


def folder_slices(directory: Path, count: int, seed: int) -> Tensor:
    from liver_gan.images import read_image_folder

    return choose(read_image_folder(directory, mode="L"), count, seed, str(directory))


def slices_from_folders(args: argparse.Namespace, num_real: int, num_fake: int) -> tuple[Tensor, Tensor, dict[str, str]]:
    if args.real_dir is None:
        raise LiverGanError("--fake-dir needs --real-dir: a folder of real slices of the same size")
    real = folder_slices(args.real_dir, num_real, args.seed)
    fake = folder_slices(args.fake_dir, num_fake, args.seed)
    return real, fake, {"real": str(args.real_dir), "fake": str(args.fake_dir)}


def slices_from_generator(args: argparse.Namespace, num_real: int, num_fake: int) -> tuple[Tensor, Tensor, dict[str, str]]:
    """Synthetic slices from the run; real ones from --real-dir or the run's own validation split."""
    import torch

    from liver_gan.data.masks import ct
    from liver_gan.device import resolve_device
    from liver_gan.images import to_uint8
    from liver_gan.runs import load_generator, run_dataset
    from liver_gan.sampling import balanced_labels, generate

    device = resolve_device(args.device, "--device")
    generator, train_cfg = load_generator(args.generator, device)
    if args.real_dir is not None:
        real, real_labels = folder_slices(args.real_dir, num_real, args.seed), None
        real_source = str(args.real_dir)
    else:
        given = {"root": args.dataset_root, "cache_dir": args.dataset_cache_dir}
        val = run_dataset(train_cfg, **{key: value for key, value in given.items() if value is not None}).val
        chosen = choose(torch.arange(len(val)), num_real, args.seed, "the run's validation split")
        real, real_labels = to_uint8(ct(val.images[chosen])), val.labels[chosen]
        real_source = f"validation split of the run's dataset ({train_cfg.dataset.name}, seed {train_cfg.seed})"
    labels = None
    if generator.num_classes:
        # The same classes as the real half where known, so the class mix gives nothing away.
        labels = real_labels[:num_fake] if real_labels is not None else balanced_labels(num_fake, generator.num_classes)
    fake = to_uint8(ct(generate(generator, num_fake, device, labels=labels, seed=args.seed)))
    return real, fake, {"real": real_source, "fake": str(args.generator)}


def make_test(args: argparse.Namespace) -> VisualTuringTest:
    from liver_gan.training.run_dir import claim_new_dir
    from liver_gan.vtt.page import Upscaling, write_visual_turing_test

    if args.num < 2:
        raise LiverGanError(f"--num={args.num}: a test needs at least 2 slices")
    num_fake, num_real = args.num // 2, args.num - args.num // 2
    collect = slices_from_generator if args.generator is not None else slices_from_folders
    real, fake, sources = collect(args, num_real, num_fake)
    out = args.out or Path(claim_new_dir(f"outputs/vtt/{time.strftime('%Y-%m-%d_%H-%M-%S')}"))
    return write_visual_turing_test(real, fake, out, args.seed, args.size, Upscaling(args.upscaling), sources)


def score_test(args: argparse.Namespace) -> None:
    from liver_gan.atomic import atomic_write_json
    from liver_gan.vtt.scoring import format_score, load_answers, load_key, score_answers

    test_id, truth = load_key(args.key)
    called_fake, reader = load_answers(args.answers, test_id, set(truth))
    score = score_answers(truth, called_fake, args.confidence)
    print(format_score(score, reader))
    if args.json is not None:
        atomic_write_json(args.json, {"reader": reader, "answers": str(args.answers), **score})
        print(f"wrote {args.json}")


@report_user_errors
def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.command == "score":
        score_test(args)
        return
    test = make_test(args)
    print(f"{test.num_real} real and {test.num_fake} synthetic slices, shuffled")
    print(f"send the reader {test.page}; keep {test.key} (it holds the answers)")
    print(f"then: liver-gan-vtt score answers.json --key {test.key}")
