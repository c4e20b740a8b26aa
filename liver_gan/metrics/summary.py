"""The metrics table printed at the end of a training run and by ``liver-gan-eval``: every metric
that was measured, grouped, from the metrics.json / eval.json fields.

Groups appear only where their metrics were computed: image quality (FID and KID, each beside its
real-vs-real floor, precision, recall, density and coverage), the per-class rows of a conditional generator, diversity, the memorisation verdict (with
its pixel-space figures as detail), and the mask checks of a ``dataset.masks=true`` run::

    FID        123.5
    FID floor  30.2 (train halves, 108 and 108 real slices); FID / floor 4.09
    KID        0.0421 ± 0.0033
    KID floor  0.0012 ± 0.00041
    per class      FID  KID                    real  fake
      healthy    130.2  0.0444 ± 0.0041         108   216
    memorised  no evidence of copying (Inception features: Z_U +4.20, copying below -3; ...)
    masks                   generated   real
      tumor area             0.226      0.017
"""

from __future__ import annotations

from typing import Any, Mapping

from liver_gan.downstream.segmentation import STRUCTURES
from liver_gan.metrics.memorisation import CLOSEST_PAIRS_FILE, COPYING_Z

Metrics = Mapping[str, Any]

# The mask checks (liver_gan/metrics/masks.py): row name and key, the real value under key + "_real".
MASK_ROWS = (
    ("tumor share", "mask_tumor_share"),
    ("clear share", "mask_clear_share"),
    ("liver area", "mask_liver_area"),
    ("tumor area", "mask_tumor_area"),
)


def format_value(value: Any) -> str:
    """Floats to 4 significant digits, None as ``-`` (not measured), anything else as is."""
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def kid_text(row: Metrics, key: str = "kid_mean", std_key: str = "kid_std") -> str | None:
    mean = row.get(key)
    return None if mean is None else f"{mean:.4g} ± {row[std_key]:.2g}"


def floor_text(metrics: Metrics) -> str | None:
    """The FID floor, which reals it compares and FID in its units: ``30.2 (val vs train, 64 and 576
    real slices); FID / floor 4.09``."""
    floor = metrics.get("fid_floor")
    if floor is None:
        return None
    stand_in, reference = metrics["floor_counts"]
    text = f"{floor:.4g} ({metrics['floor_pools']}, {stand_in} and {reference} real slices)"
    ratio = metrics.get("fid_over_floor")
    return text if ratio is None else f"{text}; FID / floor {ratio:.3g}"


def quality_lines(metrics: Metrics) -> list[str]:
    rows = {
        "FID": metrics.get("fid"),
        "FID floor": floor_text(metrics),
        "KID": kid_text(metrics),
        "KID floor": kid_text(metrics, "kid_floor", "kid_floor_std"),
        "precision": metrics.get("precision"),
        "recall": metrics.get("recall"),
        "density": metrics.get("density"),
        "coverage": metrics.get("coverage"),
    }
    return [f"  {name:<10} {format_value(value)}" for name, value in rows.items() if value is not None]


def per_class_lines(metrics: Metrics) -> list[str]:
    """A conditional generator's FID and KID per class, with the images each was measured on."""
    per_class = metrics.get("per_class") or {}
    if not per_class:
        return []
    lines = [f"  {'per class':<10} {'FID':>8}  {'KID':<20} {'real':>6} {'fake':>6}"]
    for name, row in per_class.items():
        kid = kid_text(row) or "-"
        fid = format_value(row.get("fid"))
        lines.append(f"    {name:<8} {fid:>8}  {kid:<20} {row['num_real']:>6} {row['num_fake']:>6}")
    return lines


def diversity_lines(metrics: Metrics) -> list[str]:
    if "diversity_ms_ssim" not in metrics:
        return []
    ms_ssim, cosine = metrics["diversity_ms_ssim"], metrics["diversity_feature_cosine"]
    real_ms_ssim, real_cosine = metrics["diversity_ms_ssim_real"], metrics["diversity_feature_cosine_real"]
    return [
        f"  {'diversity':<10} MS-SSIM {format_value(ms_ssim)} (real {format_value(real_ms_ssim)}), "
        f"feature cosine distance {format_value(cosine)} (real {format_value(real_cosine)})"
    ]


def memorisation_verdict(metrics: Metrics) -> str | None:
    """The headline of the feature-space copying tests (liver_gan/metrics/memorisation.py); None
    when the run did not check, or had no validation slices to compare with."""
    copying = metrics.get("memorisation_copying")
    if copying is None:
        return None
    verdict = f"YES, copies likely: look at {CLOSEST_PAIRS_FILE}" if copying else "no evidence of copying"
    share = metrics["memorisation_feature_fraction_closer_than_val"]
    return (
        f"{verdict} (Inception features: Z_U {metrics['memorisation_feature_copy_z']:+.2f}, copying below "
        f"{COPYING_Z:g}; {share:.1%} of fakes nearer a training slice than any validation slice, "
        f"chance p {metrics['memorisation_feature_closer_than_val_p']:.2g})"
    )


def memorisation_lines(metrics: Metrics) -> list[str]:
    if "memorisation_closest_pairs" not in metrics:
        return []
    verdict = memorisation_verdict(metrics)
    if verdict is None:
        return [f"  {'memorised':<10} not tested: under 2 validation slices to compare with (dataset.val_fraction)"]
    pixel = metrics.get("memorisation_pixel_fraction_closer_than_val")
    return [
        f"  {'memorised':<10} {verdict}",
        f"  {'':<10} pixel detail: {pixel:.1%} nearer a training slice than any validation slice "
        "(pixel distance favours blur, not a verdict)",
    ]


def mask_lines(metrics: Metrics) -> list[str]:
    """Generated beside real for each mask check, and the U-Net's agreement beside its real-val Dice."""
    if "mask_tumor_area" not in metrics:
        return []
    lines = [f"  {'masks':<22} {'generated':>10} {'real':>10}"]
    for name, key in MASK_ROWS:
        lines.append(f"    {name:<20} {format_value(metrics[key]):>10} {format_value(metrics[f'{key}_real']):>10}")
    for structure in STRUCTURES:
        key = f"mask_agreement_dice_{structure}"
        lines.append(
            f"    {f'U-Net Dice {structure}':<20} {format_value(metrics[key]):>10} "
            f"{format_value(metrics[f'{key}_real_val']):>10}  (real: on validation slices)"
        )
    if "mask_segmenter_epochs" in metrics:
        epochs = metrics["mask_segmenter_epochs"]
        lines.append(f"    U-Net trained {epochs} epoch{'' if epochs == 1 else 's'} on the real training slices")
    return lines


def count_line(metrics: Metrics) -> str:
    if "fake" in metrics:  # liver-gan-eval real=DIR fake=DIR
        fake, real = f"{metrics['num_fake']} images of {metrics['fake']}", f"{metrics['num_real']} of {metrics['real']}"
        return f"  measured on {fake} and {real}"
    compared = metrics.get("real_pool")
    pool = f" ({compared} pool)" if compared else ""
    settings = ""
    if "sample_steps" in metrics:
        settings = f"; {metrics['sample_steps']} sampling steps, guidance {metrics['guidance_scale']:g}"
    return f"  measured on {metrics['num_fake']} generated and {metrics['num_real']} real slices{pool}{settings}"


def metric_lines(metrics: Metrics) -> list[str]:
    """Every measured metric of ``metrics`` (the fields of metrics.json or eval.json), grouped."""
    return [
        *quality_lines(metrics),
        *per_class_lines(metrics),
        *diversity_lines(metrics),
        *memorisation_lines(metrics),
        *mask_lines(metrics),
        count_line(metrics),
    ]
