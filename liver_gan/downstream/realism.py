"""Are inserted tumors realistic?  Liver-centred crops (``dataset.crop=liver``) of an insert run's
tumor slices against the real tumor slices of its dataset (``liver-gan-utility task=realism``):

- FID and KID of the two sets (pytorch-fid's Inception, liver_gan/metrics);
- a two-sample classifier test: the classifier of ``classifier`` learns to tell real from inserted
  crops on half of the patients and is scored (AUC) on the other half; 0.5 means it cannot tell
  them apart, 1 that it always can.  Mean ± std over ``seeds``, each seed its own patient halves;
- a visual Turing test kit (liver_gan/vtt): ``vtt/vtt.html`` and its key, half real, half
  inserted crops, scored with ``liver-gan-vtt score``.

The crops keep only the CT channel: a mask channel would give the answer away.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from liver_gan.cli.vtt import choose
from liver_gan.data.dataset import SliceSet
from liver_gan.data.labels import TUMOR
from liver_gan.data.masks import ct
from liver_gan.data.schema import Crop
from liver_gan.downstream.classification import roc_auc, train_classifier, tumor_probabilities
from liver_gan.downstream.inserted import load_inserted
from liver_gan.errors import LiverGanError
from liver_gan.images import to_uint8
from liver_gan.metrics.fid import frechet_distance
from liver_gan.metrics.inception import load_feature_extractor
from liver_gan.metrics.kid import kernel_inception_distance
from liver_gan.metrics.schema import KIDConfig
from liver_gan.vtt.page import write_visual_turing_test

REALISM_FILE = "realism.json"
REAL, INSERTED = 0, 1  # the two-sample classifier's classes (it predicts "inserted")
INCEPTION_BATCH = 64


def patient_halves(patients: Tensor, seed: int) -> tuple[Tensor, Tensor]:
    """The distinct patients of ``patients`` split into two halves, reproducibly from ``seed``."""
    unique = patients.unique()
    if len(unique) < 2:
        raise LiverGanError(
            f"the two-sample test needs crops of at least 2 patients (train on some, test on others), got {len(unique)}"
        )
    order = unique[torch.randperm(len(unique), generator=torch.Generator().manual_seed(seed))]
    return order[: len(unique) // 2], order[len(unique) // 2 :]


def two_sample_auc(
    real: SliceSet, inserted: SliceSet, classifier: DictConfig, seed: int, device: torch.device
) -> float:
    """AUC of a classifier trained to tell ``inserted`` from ``real`` crops on half of the patients,
    tested on the crops of the other half."""
    images = torch.cat([ct(real.images), ct(inserted.images)])
    labels = torch.cat([torch.full((len(real),), REAL), torch.full((len(inserted),), INSERTED)])
    patients = torch.cat([real.patient_ids, inserted.patient_ids])
    train_patients, test_patients = patient_halves(patients, seed)
    train, test = torch.isin(patients, train_patients), torch.isin(patients, test_patients)
    for name, rows in (("training", train), ("test", test)):
        if labels[rows].unique().numel() < 2:
            raise LiverGanError(
                f"the two-sample test's {name} patients (seed {seed}) have crops of one kind only; "
                "it needs real and inserted tumor crops on both halves of the patients: insert into more patients"
            )
    model = train_classifier(classifier, images[train], labels[train], images.shape[-1], device, seed)
    return roc_auc(tumor_probabilities(model, images[test], device), labels[test])


def inception_distances(real: Tensor, inserted: Tensor, weights: str | None, device: torch.device, seed: int) -> dict[str, Any]:
    """FID and KID (mean, std over subsets) of two sets of CT crops in [-1, 1]."""
    extractor = load_feature_extractor(weights, device)
    real_features = extractor.features(ct(real), INCEPTION_BATCH, "real tumor crops")
    inserted_features = extractor.features(ct(inserted), INCEPTION_BATCH, "inserted tumor crops")
    kid = KIDConfig()
    kid_mean, kid_std = kernel_inception_distance(real_features, inserted_features, kid.num_subsets, kid.subset_size, seed)
    return {"fid": frechet_distance(real_features, inserted_features), "kid": {"mean": kid_mean, "std": kid_std}}


def realism_report(cfg: DictConfig, run_dir: Path, device: torch.device) -> dict[str, Any]:
    """Every realism check of ``cfg.inserted``; writes the visual Turing test under ``run_dir/vtt``."""
    if cfg.inserted is None:
        raise LiverGanError("task=realism needs inserted=INSERT_RUN (a liver-gan-insert run dir)")
    data = load_inserted(cfg.inserted, crop=Crop.liver.value)
    real = both_splits(data.real.train, data.real.val).of_class(TUMOR)
    inserted = data.tumor
    if len(real) < 2 or len(inserted) < 2:
        raise LiverGanError(
            f"{data.run_dir}: {len(real)} real and {len(inserted)} inserted tumor crops; FID and KID need at least 2 of each"
        )
    seeds = list(cfg.seeds)
    aucs = [two_sample_auc(real, inserted, cfg.classifier, seed, device) for seed in seeds]
    num_each = min(cfg.vtt_slices // 2, len(real), len(inserted))
    kit = write_visual_turing_test(
        to_uint8(ct(choose(real.images, num_each, seeds[0], "real tumor crops"))),
        to_uint8(ct(choose(inserted.images, num_each, seeds[0], "inserted tumor crops"))),
        run_dir / "vtt",
        seeds[0],
        sources={"real": "real tumor slices, dataset.crop=liver", "fake": str(data.run_dir)},
    )
    return {
        "task": "realism",
        "inserted": {"run_dir": str(data.run_dir), "patients": data.patients},
        "crop": Crop.liver.value,
        "resolution": data.real.resolution,
        "real_tumor_crops": len(real),
        "inserted_tumor_crops": len(inserted),
        **inception_distances(real.images, inserted.images, cfg.inception_weights, device, seeds[0]),
        "two_sample_auc": {"mean": statistics.fmean(aucs), "std": statistics.stdev(aucs) if len(aucs) > 1 else 0.0,
                           "values": aucs, "seeds": seeds},
        "classifier": OmegaConf.to_container(cfg.classifier, resolve=True),
        "vtt": {"page": str(kit.page), "key": str(kit.key), "slices": 2 * num_each},
    }


def both_splits(train: SliceSet, val: SliceSet) -> SliceSet:
    """Both splits' slices: realism compares textures, it trains nothing that is tested on val."""
    return SliceSet(
        torch.cat([train.images, val.images]),
        torch.cat([train.labels, val.labels]),
        torch.cat([train.patient_ids, val.patient_ids]),
    )


def format_realism_table(report: dict[str, Any]) -> str:
    auc = report["two_sample_auc"]
    return "\n".join([
        f"inserted tumors of {report['inserted']['run_dir']} against real tumor slices "
        f"(liver-centred crops at {report['resolution']} px)",
        f"crops: {report['real_tumor_crops']} real, {report['inserted_tumor_crops']} inserted",
        f"FID {report['fid']:.2f}   KID {report['kid']['mean']:.4f} ± {report['kid']['std']:.4f}",
        f"two-sample AUC (real vs inserted, disjoint patients): {auc['mean']:.3f} ± {auc['std']:.3f} "
        f"over seeds {auc['seeds']} (0.5 = indistinguishable)",
        f"visual Turing test: {report['vtt']['page']} ({report['vtt']['slices']} crops); "
        f"score with liver-gan-vtt score ANSWERS.json --key {report['vtt']['key']}",
    ])
