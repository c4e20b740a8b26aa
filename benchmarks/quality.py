"""Time to quality (issues 14 and 15): FID and KID after equal training minutes, on the phantom.

Every arm is ``liver-gan-train`` on the default phantom's tumor slices (``dataset.subset=tumor``) at 64 px, stopped by
``trainer.max_minutes`` (the same minutes for each), then evaluated with the same sample count
against the same real pool (all training slices), so that the rows compare what a user gets
from the same wall-clock budget on this machine.  One run per arm: the quality of a short GAN run
varies from seed to seed, so read differences of a few FID points as noise.

The arms, as a user would type them:

- the thesis MLP: ``experiment=thesis``;
- DCGAN: the default run's model and loss (``experiment=quickstart``: DCGAN at base 32,
  non-saturating + R1) without its augmentation and EMA (``augment=none trainer.ema_kimg=null``);
- DCGAN + DiffAugment + EMA: the same with ``augment=diffaugment trainer.ema_kimg=1``;
- stylegan2 + DiffAugment + EMA: ``experiment=stylegan2``;
- ddpm: ``model=ddpm``, sampled with 20 DDIM steps (``model.sample_steps=20``).

The goal of issue 14: the stylegan2 preset at no more than half of DCGAN's FID at equal minutes.

``--only augment`` (issue 25) asks which augmentation the default run should take: the default run
exactly as ``liver-gan-train`` composes it (experiment=quickstart: DCGAN, 700 steps of 32, EMA, 256
samples against all 433 real slices), once per ``augment=none|diffaugment|ada`` and per seed.  Its
budget is steps, not minutes, so the arms see the same images and other load on the cores changes
only their times (read the seconds per step side by side, from the same run).  Each run takes one
intra-op thread (``trainer.num_threads=1``), so that it can share the cores with other work
without its threads waiting on each other: threads change the time per step, not what is learned.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from statistics import mean
from typing import Any

from omegaconf import DictConfig

from liver_gan.training.loop import train

from configs import compose_config, workdir_overrides
from measure import Figure, Section, announce

# (label, overrides): each arm as ``liver-gan-train`` would compose it.
ARMS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("thesis MLP (experiment=thesis)", ("experiment=thesis",)),
    ("DCGAN (experiment=quickstart's model and loss, augment=none, trainer.ema_kimg=null)", ("augment=none", "trainer.ema_kimg=null")),
    ("DCGAN + DiffAugment + EMA", ("augment=diffaugment", "trainer.ema_kimg=1")),
    ("stylegan2 + DiffAugment + EMA (experiment=stylegan2)", ("experiment=stylegan2",)),
    # 20 DDIM steps instead of the default 50: 512 samples at 50 steps would take about 14 minutes here.
    ("ddpm (model=ddpm model.sample_steps=20)", ("model=ddpm", "model.sample_steps=20", "trainer.ema_kimg=null")),
)
DCGAN_ARM = ARMS[1][0]
STYLEGAN2_ARM = ARMS[3][0]

# (training minutes per arm, generated images per evaluation): default run, --quick.  Three
# minutes is the default run's training budget (issue 13: at most 5 minutes, evaluation included).
BUDGET = {False: (3.0, 512), True: (0.5, 128)}


def arm_config(
    overrides: tuple[str, ...], workdir: Path, minutes: float, num_samples: int, device: str = "cpu", *extra: str
) -> DictConfig:
    """One arm's config: the user's overrides, then the shared budget and evaluation on ``device``,
    then ``extra`` (gpu_check.py's dry run: a tiny phantom and tiny widths)."""
    return compose_config(
        [
            *overrides,
            f"trainer.device={device}",
            f"trainer.max_minutes={minutes}",
            "trainer.max_steps=null",
            "trainer.epochs=100000",  # the minutes stop every arm, not its epochs
            "trainer.checkpoint_every=100000",
            "trainer.sample_every=100000",
            "dataset.subset=tumor",
            "dataset.resolution=64",
            f"eval.num_samples={num_samples}",
            "eval.real_pool=train",
            "eval.metrics=[fid,kid]",
            *workdir_overrides(workdir),
            *extra,
        ]
    )


def train_arm(label: str, overrides: tuple[str, ...], workdir: Path, minutes: float, num_samples: int) -> dict[str, Any]:
    announce(f"{label}: {minutes:g} training minutes")
    return train_in_scratch_dir(arm_config(overrides, workdir, minutes, num_samples), workdir)


def train_in_scratch_dir(cfg: DictConfig, workdir: Path) -> dict[str, Any]:
    """``liver-gan-train``'s run in a fresh run dir under ``workdir``, removed afterwards: its metrics."""
    run_dir = Path(tempfile.mkdtemp(prefix="quality-", dir=workdir))
    try:
        return train(cfg, run_dir)
    finally:
        shutil.rmtree(run_dir)


def benchmark_quality(workdir: Path, quick: bool, repeats: int) -> list[Section]:
    """One run per arm (``repeats`` does not apply: a run is the measurement)."""
    minutes, num_samples = BUDGET[quick]
    section = Section(f"Time to quality: FID and KID after {minutes:g} training minutes on the phantom (CPU)")
    section.extra_columns = ("steps", "KID x 1000")
    figures: dict[str, Figure] = {}
    for label, overrides in ARMS:
        metrics = train_arm(label, overrides, workdir, minutes, num_samples)
        # Said at once, so that a run stopped before its last arm keeps what it measured.
        announce(f"{label}: FID {metrics['fid']:.1f}, KID {metrics['kid_mean']:.4f} after {metrics['steps']} steps")
        figures[label] = section.add(
            Figure(label, "FID", (metrics["fid"],), limit=f"{metrics['steps']} steps in {minutes:g} min"),
            str(metrics["steps"]),
            f"{metrics['kid_mean'] * 1000:.1f}",
        )
    section.ratio("stylegan2 preset FID / DCGAN FID", figures[STYLEGAN2_ARM], figures[DCGAN_ARM], at_most=0.5)
    section.notes.append(
        f"each arm: {num_samples} generated images against all the phantom's training tumor slices, "
        "FID and KID only; one run per arm (seed 0), so min = median = max"
    )
    return [section]


AUGMENT_ARMS = ("none", "diffaugment", "ada")
AUGMENT_SEEDS = {False: (0, 1), True: (0,)}


def default_run_metrics(augment: str, seed: int, workdir: Path, quick: bool) -> dict[str, Any]:
    """The default run with ``augment=AUGMENT seed=SEED`` (``--quick``: 50 steps, 64 samples)."""
    announce(f"default run, augment={augment}, seed {seed}")
    quick_budget = ("trainer.max_steps=50", "eval.num_samples=64") if quick else ()
    cfg = compose_config(
        [f"augment={augment}", f"seed={seed}", "trainer.device=cpu", "trainer.num_threads=1", "eval.metrics=[fid,kid]",
         *quick_budget, *workdir_overrides(workdir)]
    )
    return train_in_scratch_dir(cfg, workdir)


def benchmark_augment(workdir: Path, quick: bool, repeats: int) -> list[Section]:
    """Each augmentation on the default run, over the seeds (``repeats`` does not apply: a run is the measurement)."""
    seeds = AUGMENT_SEEDS[quick]
    section = Section("The default run's augmentation: FID after its steps, per augment=..., over seeds (CPU)")
    section.extra_columns = ("FID per seed", "FID / floor", "KID x 1000", "s / step")
    figures: dict[str, Figure] = {}
    for augment in AUGMENT_ARMS:
        runs = [default_run_metrics(augment, seed, workdir, quick) for seed in seeds]
        fids = tuple(run["fid"] for run in runs)
        announce(f"augment={augment}: FID {', '.join(f'{fid:.1f}' for fid in fids)}")
        figures[augment] = section.add(
            Figure(f"augment={augment}", "FID", fids, limit=f"{runs[0]['steps']} steps, seeds {', '.join(map(str, seeds))}"),
            " / ".join(f"{fid:.1f}" for fid in fids),
            f"{mean(run['fid_over_floor'] for run in runs):.1f}",
            f"{mean(run['kid_mean'] for run in runs) * 1000:.1f}",
            f"{mean(run['train_seconds'] / run['steps'] for run in runs):.3f}",
        )
    section.ratio("diffaugment FID / none FID (medians)", figures["diffaugment"], figures["none"], at_most=1.0)
    section.ratio("ada FID / none FID (medians)", figures["ada"], figures["none"], at_most=1.0)
    section.notes.append(
        "each run: the default run (experiment=quickstart) with augment=... and seed=..., evaluated on FID and KID only "
        "(eval.metrics=[fid,kid]) with its floor (two disjoint halves of the real slices); the phantom's slices, "
        "so a ranking here is a hint for real CT, not proof"
    )
    return [section]
