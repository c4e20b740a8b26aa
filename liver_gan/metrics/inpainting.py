"""The end-of-run evaluation of the lesion inpainter (``model=inpaint``), beside mean-filling.

An inpainter draws nothing from noise, so the noise-sampling metrics (liver_gan/metrics/evaluate.py)
mean nothing for it.  Instead, the tumor region of every validation tumor crop is filled twice, as
``lesion=learned`` fills a region (liver_gan/lesions/learned.py):

- by the inpainter, given the hole it trained on (the tumor grown by ``model.hole_dilation``,
  without random blobs), its fill kept inside the tumor only;
- by the baseline, the mean liver value in a ring around the tumor.

Each fill is scored by the mean absolute HU error inside the tumor against the real crop
(``l1_region_hu``), and by FID and KID of the filled crops against the real crops (CT channel,
pytorch-fid's Inception).  The inpainter's numbers are metrics.json's ``fid``, ``kid_mean``,
``kid_std`` and ``l1_region_hu``; the baseline's the same names prefixed ``mean_fill_``.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from omegaconf import DictConfig
from torch import Tensor, nn

from liver_gan.data.dataset import PreparedDataset
from liver_gan.data.labels import TUMOR
from liver_gan.errors import LiverGanError
from liver_gan.metrics.evaluate import feature_extractor_info
from liver_gan.metrics.fid import frechet_distance
from liver_gan.metrics.inception import FeatureExtractor, load_feature_extractor
from liver_gan.metrics.kid import kernel_inception_distance
from liver_gan.models.inpaint import conditioning
from liver_gan.distributed import SINGLE_PROCESS, World
from liver_gan.training.inpaint_step import dilate, masked_l1, split_masks, tumor_holes

log = logging.getLogger(__name__)

MEAN_FILL_RING = 3  # pixels around the hole whose liver gives the baseline's fill value
METRIC_NAMES = ["l1_region_hu", "fid", "kid"]


@torch.no_grad()
def inpaint(generator: nn.Module, ct: Tensor, hole: Tensor, liver: Tensor, batch_size: int) -> Tensor:
    """The generator's fill of every crop's hole, in batches on the generator's device; on the CPU."""
    device = next(generator.parameters()).device
    was_training = generator.training
    generator.eval()
    filled = [
        generator(conditioning(*(part.to(device) for part in parts))).cpu()
        for parts in zip(ct.split(batch_size), hole.split(batch_size), liver.split(batch_size))
    ]
    generator.train(was_training)
    return torch.cat(filled)


def mean_fill(ct: Tensor, hole: Tensor, liver: Tensor, ring: int = MEAN_FILL_RING) -> Tensor:
    """Each hole filled with the mean of the liver within ``ring`` pixels of it (of all the liver
    outside it when that ring holds none, of the whole crop outside it when there is no liver)."""
    outside = 1 - hole
    candidates = [dilate(hole, ring) * liver * outside, liver * outside, outside]
    values = ct.new_zeros(len(ct))
    found = torch.zeros(len(ct), dtype=torch.bool)
    for area in candidates:
        pixels = area.sum(dim=(1, 2, 3))
        mean = (ct * area).sum(dim=(1, 2, 3)) / pixels.clamp(min=1)
        use = ~found & (pixels > 0)
        values[use], found = mean[use], found | use
    return ct * outside + values[:, None, None, None] * hole


def fill_scores(
    filled: Tensor,
    ct: Tensor,
    region: Tensor,
    real_features: Any,
    extractor: FeatureExtractor,
    cfg: DictConfig,
    what: str,
) -> dict[str, float]:
    """L1 inside the filled regions in HU, and FID and KID of the filled crops against the real ones."""
    features = extractor.features(filled, cfg.eval.batch_size, what)
    kid_mean, kid_std = kernel_inception_distance(
        real_features, features, cfg.eval.kid.num_subsets, cfg.eval.kid.subset_size, cfg.seed
    )
    hu_per_unit = cfg.dataset.window.width / 2  # [-1, 1] spans the window
    return {
        "l1_region_hu": float(masked_l1(filled, ct, region)) * hu_per_unit,
        "fid": frechet_distance(real_features, features),
        "kid_mean": kid_mean,
        "kid_std": kid_std,
    }


def evaluate_inpainter(
    generator: nn.Module,
    dataset: PreparedDataset,
    cfg: DictConfig,
    device: torch.device | str,
    world: World = SINGLE_PROCESS,
) -> dict[str, Any] | None:
    """metrics.json's fields for an inpainter run (the module docstring); None on ranks other than 0."""
    if not world.is_main:
        return None
    val = dataset.val.of_class(TUMOR)
    if len(val) < 2:
        raise LiverGanError(
            f"model=inpaint is evaluated on the validation patients' tumor slices and there are {len(val)}: "
            "raise dataset.val_fraction, or set eval.enabled=false"
        )
    extractor = load_feature_extractor(cfg.eval.inception_weights, device)
    ct, liver, tumor = split_masks(val.images.float())
    hole = tumor_holes(tumor, liver, cfg.model.hole_dilation)
    real_features = extractor.features(ct, cfg.eval.batch_size, "real validation tumor crops")
    inpainted = inpaint(generator, ct, hole, liver, cfg.eval.batch_size)
    model = fill_scores(ct + (inpainted - ct) * tumor, ct, tumor, real_features, extractor, cfg, "inpainted crops")
    baseline = fill_scores(mean_fill(ct, tumor, liver), ct, tumor, real_features, extractor, cfg, "mean-filled crops")
    for name, scores in (("inpainter", model), ("mean fill", baseline)):
        log.info(
            "%s on %d validation tumor crops: L1 in the tumor %.1f HU, FID %.4g, KID %.4g",
            name, len(val), scores["l1_region_hu"], scores["fid"], scores["kid_mean"],
        )
    return {
        "metrics": METRIC_NAMES,
        "num_real": len(val),
        "num_fake": len(val),
        "real_pool": "val",
        "feature_extractor": feature_extractor_info(extractor),
        **model,
        **{f"mean_fill_{key}": value for key, value in baseline.items()},
    }
