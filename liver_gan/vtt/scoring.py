"""Score a reader's answers against the key (the Higaki et al. protocol the thesis cites).

The correct-answer rate gets an exact (Clopper-Pearson) binomial confidence interval, and a
two-sided exact binomial test says whether it differs from the 50% of guessing. A rate near 50%
means the reader could not tell synthetic slices from real ones. Unanswered slices are left out
and counted, so a partial export is scored on what was answered.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from scipy.stats import beta, binomtest

from liver_gan.errors import LiverGanError
from liver_gan.vtt.page import KEY_FORMAT, decode_truth

ANSWERS = {"real": False, "fake": True}  # the answer, as "is synthetic"
CHANCE = 0.5


def _read_json(path: Path, what: str) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise LiverGanError(f"{path}: cannot read the {what} ({error}); pass the file the VTT page or liver-gan-vtt make wrote") from error
    if not isinstance(data, dict):
        raise LiverGanError(f"{path}: not a {what}")
    return data


def load_key(path: Path) -> tuple[str, dict[str, bool]]:
    """The test id and, per slice id, whether the slice is synthetic."""
    key = _read_json(path, "VTT key")
    if key.get("format") != KEY_FORMAT:
        raise LiverGanError(f"{path}: not a liver-gan VTT key (format {key.get('format')!r}); pass the key.json beside vtt.html")
    ids, salt, encoded = key.get("ids"), key.get("salt"), key.get("encoded_truth")
    if not (isinstance(ids, list) and all(isinstance(slice_id, str) for slice_id in ids)) or not (
        isinstance(salt, str) and isinstance(encoded, str) and isinstance(key.get("test_id"), str)
    ):
        raise LiverGanError(f"{path}: the key is corrupt (ids, salt, encoded_truth or test_id missing or mistyped)")
    try:
        truth = decode_truth(salt, encoded)
    except (TypeError, ValueError) as error:
        raise LiverGanError(f"{path}: the key is corrupt ({type(error).__name__} decoding its answers)") from None
    if len(truth) != len(ids):
        raise LiverGanError(f"{path}: the key is corrupt ({len(ids)} ids, {len(truth)} answers)")
    return key["test_id"], dict(zip(ids, truth))


def load_answers(path: Path, test_id: str, ids: set[str]) -> tuple[dict[str, bool], str]:
    """The reader's answers, as "called synthetic", and the reader's name, checked against the key."""
    export = _read_json(path, "answers file")
    if export.get("test_id") != test_id:
        raise LiverGanError(
            f"{path} answers test {export.get('test_id')!r} but the key is for test {test_id!r}; pass the matching key"
        )
    answers = export.get("answers")
    if not isinstance(answers, dict):
        raise LiverGanError(f"{path}: no answers object; export it again from the VTT page")
    unknown = sorted(set(answers) - ids)
    bad = sorted(repr(value) for value in answers.values() if not isinstance(value, str) or value not in ANSWERS)
    if unknown or bad:
        raise LiverGanError(f"{path}: unknown slice ids {unknown[:3]} or answers {bad[:3]}; answers are 'real' or 'fake'")
    return {slice_id: ANSWERS[value] for slice_id, value in answers.items()}, str(export.get("reader") or "")


def clopper_pearson(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact binomial confidence interval for ``successes`` out of ``trials``."""
    alpha = 1 - confidence
    low = beta.ppf(alpha / 2, successes, trials - successes + 1) if successes > 0 else 0.0
    high = beta.ppf(1 - alpha / 2, successes + 1, trials - successes) if successes < trials else 1.0
    return float(low), float(high)


def proportion(successes: int, trials: int, confidence: float) -> dict[str, Any]:
    if trials == 0:
        return {"successes": 0, "trials": 0, "rate": None, "ci_low": None, "ci_high": None}
    low, high = clopper_pearson(successes, trials, confidence)
    return {"successes": successes, "trials": trials, "rate": successes / trials, "ci_low": low, "ci_high": high}


def score_answers(truth: dict[str, bool], called_fake: dict[str, bool], confidence: float = 0.95) -> dict[str, Any]:
    """Correct-answer rate, sensitivity (synthetic slices called fake), specificity (real called real)."""
    if not 0 < confidence < 1:
        raise LiverGanError(f"--confidence={confidence} must lie strictly between 0 and 1")
    if not called_fake:
        raise LiverGanError("the answers file holds no answers; mark some slices on the page before exporting")
    fakes = [slice_id for slice_id in called_fake if truth[slice_id]]
    reals = [slice_id for slice_id in called_fake if not truth[slice_id]]
    correct = sum(called_fake[slice_id] == truth[slice_id] for slice_id in called_fake)
    answered = len(called_fake)
    p_value = binomtest(correct, answered, CHANCE, alternative="two-sided").pvalue
    return {
        "num_slices": len(truth),
        "answered": answered,
        "confidence": confidence,
        "correct": proportion(correct, answered, confidence),
        "sensitivity": proportion(sum(called_fake[s] for s in fakes), len(fakes), confidence),
        "specificity": proportion(sum(not called_fake[s] for s in reals), len(reals), confidence),
        "p_value_vs_chance": float(p_value),
        "differs_from_chance": bool(p_value < 1 - confidence),
    }


def _percent(result: dict[str, Any]) -> str:
    if result["rate"] is None:
        return "n/a (none answered)"
    return (
        f"{result['successes']}/{result['trials']} = {100 * result['rate']:.1f}% "
        f"(CI {100 * result['ci_low']:.1f}%-{100 * result['ci_high']:.1f}%)"
    )


def format_score(score: dict[str, Any], reader: str = "") -> str:
    level = f"{100 * score['confidence']:g}%"
    verdict = (
        "differs from chance: the reader tells synthetic from real"
        if score["differs_from_chance"]
        else "does not differ from chance: the reader cannot reliably tell synthetic from real"
    )
    lines = [
        f"reader: {reader or '(unnamed)'}; answered {score['answered']} of {score['num_slices']} slices",
        f"correct answers:                  {_percent(score['correct'])}, {level} Clopper-Pearson",
        f"synthetic called fake (sens.):    {_percent(score['sensitivity'])}",
        f"real called real (spec.):         {_percent(score['specificity'])}",
        f"vs chance (50%): exact two-sided binomial test p = {score['p_value_vs_chance']:.3g}, so the rate {verdict}",
    ]
    return "\n".join(lines)
