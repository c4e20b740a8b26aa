"""The console scripts that pyproject.toml installs (``liver-gan-train`` = :func:`train`, ...).

Each names its tool's config and task; the task's module, and torch with it, is imported only
when the task runs, so ``--help`` and a mistyped override answer at once.  The argparse tools
(summary, cache, vtt) are imported after the torch/torchvision check, which a mismatched pair
would otherwise never reach (``import torchvision`` fails first).
"""

from __future__ import annotations

import functools
import importlib
import sys
from typing import Callable

from liver_gan.cli import report_user_errors, run_hydra_app
from liver_gan.cli.torch_versions import check_torch_pair

# Only a resume takes a run's saved overrides (liver_gan.training.run_dir.with_saved_overrides).
RESUME = "trainer.resume=auto"


def train() -> None:
    if RESUME in sys.argv[1:]:
        from liver_gan.training.run_dir import with_saved_overrides  # imports torch: only for a resume

        sys.argv = [sys.argv[0], *report_user_errors(with_saved_overrides)(sys.argv[1:])]
    run_hydra_app("liver_gan.cli.train:train_task", "train")


def _console_script(name: str, run: Callable[..., None], *args: str) -> Callable[[], None]:
    """``run(*args)`` as the console script ``name``, named like the function it stands for (the
    tests start a tool with its ``__name__`` as ``sys.argv[0]``)."""
    script = functools.partial(run, *args)
    script.__name__ = script.__qualname__ = name
    return script


def _argparse_tool(module: str) -> None:
    report_user_errors(check_torch_pair)()
    importlib.import_module(module).main()


prepare = _console_script("prepare", run_hydra_app, "liver_gan.cli.prepare:prepare", "prepare")
sample = _console_script("sample", run_hydra_app, "liver_gan.cli.sample:sample", "sample")
evaluate = _console_script("evaluate", run_hydra_app, "liver_gan.cli.evaluate:evaluate", "evaluate")
utility = _console_script("utility", run_hydra_app, "liver_gan.cli.utility:utility", "utility")
insert = _console_script("insert", run_hydra_app, "liver_gan.cli.insert:insert", "insert")
summary = _console_script("summary", _argparse_tool, "liver_gan.cli.summary")
cache = _console_script("cache", _argparse_tool, "liver_gan.cli.cache")
vtt = _console_script("vtt", _argparse_tool, "liver_gan.cli.vtt")
