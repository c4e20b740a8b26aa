"""Schemas of the ``eval`` config group (conf/eval/*.yaml), registered in liver_gan/config.py;
read by the evaluation beside them (evaluate.py, registry.py and each metric's module).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import List, Optional

from liver_gan.downstream.schema import SegmenterConfig


class RealPool(str, Enum):
    train = "train"
    val = "val"
    both = "both"


@dataclass
class FIDConfig:
    """Options only FID reads (liver_gan/metrics/registry.py, ``fid``)."""

    save_images: bool = False  # write the measured images to fid_images/{real,fake}/ for pytorch-fid's CLI


@dataclass
class KIDConfig:
    """Options only KID reads (liver_gan/metrics/kid.py)."""

    num_subsets: int = 100
    subset_size: int = 1000


@dataclass
class EvalConfig:
    """The end-of-run evaluation (liver_gan/metrics/evaluate.py): these keys serve every metric."""

    enabled: bool = True
    # Names registered in liver_gan/metrics/registry.py, computed in this order.
    # masks: only where the slices carry them (dataset.masks=true).
    metrics: List[str] = field(
        default_factory=lambda: [
            "fid", "kid", "precision_recall", "density_coverage", "diversity", "memorisation", "masks"
        ]
    )
    # Generated images; null: twice the real images compared, at most 2048 (sized to the data).
    num_samples: Optional[int] = None
    max_real: int = 2048  # real images of real_pool: a fixed random choice of this many when it holds more
    real_pool: RealPool = RealPool.train
    batch_size: int = 50  # images per Inception pass
    inception_weights: Optional[str] = None  # path to pt_inception-2015-12-05-6726825d.pth for offline use
    cache_dir: str = "outputs/cache/reference_stats"
    fid: FIDConfig = field(default_factory=FIDConfig)
    kid: KIDConfig = field(default_factory=KIDConfig)
    # The image-mask agreement check of the masks metric (dataset.masks=true): a U-Net trained on the real train split.
    segmenter: SegmenterConfig = field(default_factory=SegmenterConfig)
    # FID during training (liver_gan/training/snapshots.py): every this many thousand training images,
    # appended to metrics.jsonl and kept as checkpoints/best.pt at its lowest; None: only the final evaluation.
    every_kimg: Optional[float] = None
    snapshot_samples: int = 256  # generated images per snapshot FID (the final evaluation keeps num_samples)
