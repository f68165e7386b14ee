"""Model selection that can tell models apart: blocked cross-validation, paired differences, a candidate.

Why blocked (contiguous) folds: adjacent windows share W-1 actions, so shuffled folds leak. The first
part of the sequence (the chronological train + validation parts; the last 10 % hold-out is never used
for a choice) is cut into ``folds`` contiguous blocks. For fold k, block k is held out, a stretch beside
it is the validation part (early stopping, the mixture weight), the rest trains, and ``window`` actions
are dropped from the training side of every boundary, so no training window touches held-out actions.

Why paired differences: the spread between folds is larger than the gaps between models, but every
model sees the same folds, so the per-fold difference to the best n-gram (its mean and standard error)
shows whether a model is better beyond that noise. The candidate for ``@champion`` is the model with the
best CV mean top-k (``selection.target_k``); the n-gram is eligible.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from perfspec.errors import InputError
from perfspec.learn.dataset import Dataset
from perfspec.learn.scoring import KS, topk_from_ranks

Progress = Callable[[str], None]


def cv_segments(dataset: Dataset, folds: int, fold: int) -> dict[str, list[tuple[int, int]]]:
    """Train/val/test log segments of one blocked fold over the chronological train + validation parts
    (``Dataset.from_log`` turns them into the dataset's segments)."""
    if dataset.settings.split != "chronological":
        raise InputError(
            "cross-validation runs on the chronological split", hint="use --cv 0 with --split kfold"
        )
    n_dev = max(b for part in ("train", "val") for _a, b in dataset.log_split[part])
    share = dataset.settings.val_fraction / (dataset.settings.train_fraction + dataset.settings.val_fraction)
    n_val, gap = round(n_dev * share), dataset.window
    bounds = [round(i * n_dev / folds) for i in range(folds + 1)]
    t0, t1 = bounds[fold], bounds[fold + 1]
    v0, v1 = (max(0, t0 - n_val), t0) if fold > 0 else (t1, min(n_dev, t1 + n_val))
    held0, held1 = min(t0, v0), max(t1, v1)
    train = [(a, b) for a, b in ((0, held0 - gap), (held1 + gap, n_dev)) if b - a > 0]
    return {"train": train, "val": [(v0, v1)], "test": [(t0, t1)]}


def fold_view(dataset: Dataset, folds: int, fold: int) -> Dataset:
    """The dataset seen through one fold (same ids and vocabulary, the fold's segments)."""
    log_segments = cv_segments(dataset, folds, fold)
    view = dataset.with_segments(dataset.from_log(log_segments), f"cv{folds}-{fold}", log_segments)
    for split in ("train", "val", "test"):
        if len(view.windows(split)[1]) == 0:
            raise InputError(
                f"fold {fold} of {folds} has no {split} window",
                hint="use fewer --cv folds, a smaller --window, or more actions",
            )
    return view


@dataclass
class ModelScores:
    """One model's ranks of the true next action: per CV fold and on the hold-out test part."""

    name: str
    family: str
    fold_ranks: list[np.ndarray] = field(default_factory=list)
    test_ranks: np.ndarray | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def fold_topk(self, ks: Sequence[int] = KS) -> list[dict[str, float]]:
        return [topk_from_ranks(r, ks) for r in self.fold_ranks]


def cv_summary(scores: ModelScores, ks: Sequence[int] = KS) -> dict[str, dict[str, Any]]:
    """``{"top5": {"mean", "std", "folds"}, ...}`` over the folds (std with ddof=1)."""
    per_fold = scores.fold_topk(ks)
    out: dict[str, dict[str, Any]] = {}
    for k in ks:
        values = [fold[f"top{k}"] for fold in per_fold]
        out[f"top{k}"] = {
            "mean": float(np.mean(values)) if values else math.nan,
            "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0,
            "folds": [round(v, 6) for v in values],
        }
    return out


def paired_difference(a: Sequence[float], b: Sequence[float]) -> dict[str, Any]:
    """Mean of the paired differences ``a - b``, its standard error, and the per-pair values."""
    diffs = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if len(diffs) == 0:
        return {"mean": math.nan, "se": math.nan, "folds": []}
    se = float(np.std(diffs, ddof=1) / math.sqrt(len(diffs))) if len(diffs) > 1 else math.nan
    return {"mean": float(diffs.mean()), "se": se, "folds": [round(float(d), 6) for d in diffs]}


def beyond_noise(diff: Mapping[str, Any], standard_errors: float) -> bool:
    """A positive mean paired difference larger than ``standard_errors`` standard errors."""
    mean, se = diff.get("mean", math.nan), diff.get("se", math.nan)
    if mean is None or se is None or math.isnan(mean) or math.isnan(se):
        return False
    return mean > 0 and mean > standard_errors * se


def choose_candidate(summaries: Mapping[str, Mapping[str, Mapping[str, Any]]], target_k: int) -> str:
    """The model with the best CV mean top-``target_k`` (ties: the first given, i.e. the simpler)."""
    key = f"top{target_k}"
    best, best_value = "", -math.inf
    for name, summary in summaries.items():
        value = summary[key]["mean"]
        if value > best_value + 1e-12:
            best, best_value = name, value
    return best


def compare(
    scores: Mapping[str, ModelScores], reference: str, target_k: int, ks: Sequence[int] = KS
) -> dict[str, Any]:
    """CV summaries, paired differences to ``reference`` (the best n-gram) and the candidate."""
    with_cv = {name: s for name, s in scores.items() if s.fold_ranks}
    summaries = {name: cv_summary(s, ks) for name, s in with_cv.items()}
    paired: dict[str, dict[str, Any]] = {}
    if reference in summaries:
        for name in summaries:
            paired[name] = {
                f"top{k}": paired_difference(
                    summaries[name][f"top{k}"]["folds"], summaries[reference][f"top{k}"]["folds"]
                )
                for k in ks
            }
    candidate = choose_candidate(summaries, target_k) if summaries else reference
    return {"cv": summaries, "paired": paired, "candidate": candidate, "reference": reference}
