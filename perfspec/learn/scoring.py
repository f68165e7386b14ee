"""Top-k scoring shared by every model family: ranks of the true next action, top-k, coverage.

Why ranks: the rank of the true next action among all scores (0 = best) answers every top-k at once,
and the coverage curve (share of next actions inside the top k, k = 1..20) is the runtime's metric:
with k candidates precomputed per step it is the share of requests whose verification is already done.
``<unk>`` (id 0) is never a prediction: its score is ignored, and a target outside the vocabulary is a
miss for every model. Ties go to the lower id, like ``np.argsort(..., kind="stable")`` of ``-scores``.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

KS = (1, 3, 5, 10, 20)
CURVE_K = 20
MISS = np.iinfo(np.int64).max  # the rank of a target that is no prediction (<unk>)


def target_ranks(scores: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Rank (0 = best) of ``y[i]`` in row ``i`` of ``scores``, ``<unk>`` excluded; ``MISS`` for ``y == 0``."""
    y = np.asarray(y, dtype=np.int64)
    if len(y) == 0:
        return np.zeros(0, dtype=np.int64)
    scores = np.asarray(scores)
    true = scores[np.arange(len(y)), y][:, None]
    ids = np.arange(scores.shape[1])[None, :]
    better = (scores > true) | ((scores == true) & (ids < y[:, None]))
    better[:, 0] = False  # <unk> never outranks anything
    ranks = better.sum(axis=1).astype(np.int64)
    ranks[y == 0] = MISS
    return ranks


def topk_from_ranks(ranks: np.ndarray, ks: Iterable[int] = KS) -> dict[str, float]:
    """``{"top1": ..., "top5": ...}``: share of ranks below k (0.0 on an empty set)."""
    return {f"top{k}": float(np.mean(ranks < k)) if len(ranks) else 0.0 for k in ks}


def coverage_curve(ranks: np.ndarray, kmax: int = CURVE_K) -> list[float]:
    """Share of next actions inside the top k, for k = 1..kmax."""
    return [float(np.mean(ranks < k)) if len(ranks) else 0.0 for k in range(1, kmax + 1)]


def topk_accuracy(scores: np.ndarray, y: np.ndarray, ks: Iterable[int] = KS) -> dict[str, float]:
    return topk_from_ranks(target_ranks(scores, y), ks)


def ranked_ids(scores: np.ndarray, k: int) -> np.ndarray:
    """Ids of the ``k`` best scores per row, best first, ``<unk>`` excluded (ties: lower id first)."""
    scores = np.array(scores, dtype=np.float64, copy=True)
    scores[:, 0] = -np.inf
    k = min(k, scores.shape[1] - 1)
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]
