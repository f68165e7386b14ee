"""Baselines the LSTM must beat: the most frequent action, and an n-gram model with stupid back-off.

Why these: on audit-derived action streams a back-off n-gram is strong (helm installs replay the same
request patterns), so an LSTM that does not clear it adds nothing. Every model returns a score matrix
(n_windows, vocab) and ``topk_hits`` ranks them all the same way, so top-k is comparable across models.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

KS = (1, 3, 5, 10)


def ranks(scores: np.ndarray, k: int) -> np.ndarray:
    """Ids of the ``k`` highest scores per row, best first; ties go to the lower id (stable)."""
    k = min(k, scores.shape[1])
    order = np.argsort(-scores, axis=1, kind="stable")
    return order[:, :k]


def topk_hits(scores: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
    """Boolean per row: is the true next id among the ``k`` best-ranked ids."""
    if len(y) == 0:
        return np.zeros(0, dtype=bool)
    return (ranks(scores, k) == np.asarray(y)[:, None]).any(axis=1)


def topk_accuracy(scores: np.ndarray, y: np.ndarray, ks: Iterable[int] = KS) -> dict[str, float]:
    """``{"top1": ..., "top3": ...}`` (0.0 on an empty set)."""
    return {f"top{k}": float(topk_hits(scores, y, k).mean()) if len(y) else 0.0 for k in ks}


@dataclass
class MostFrequent:
    """Always ranks actions by their training frequency, whatever the context."""

    vocab_size: int
    distribution: np.ndarray = field(init=False)

    def fit(self, sequences: Iterable[np.ndarray]) -> MostFrequent:
        counts = np.zeros(self.vocab_size, dtype=np.float64)
        for seq in sequences:
            counts += np.bincount(np.asarray(seq, dtype=np.int64), minlength=self.vocab_size)
        self.distribution = counts / max(counts.sum(), 1.0)
        return self

    def scores(self, x: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.distribution, (len(x), self.vocab_size)).copy()


@dataclass
class NGram:
    """Order-``order`` Markov model with stupid back-off (Brants et al. 2007), normalised per row.

    ``S(w | ctx) = c(ctx w) / c(ctx)`` if seen, else ``alpha * S(w | ctx minus its oldest action)``,
    down to unigram frequencies. Counts only within each training segment (never across a boundary).
    """

    vocab_size: int
    order: int = 3
    alpha: float = 0.4
    tables: list[dict[tuple[int, ...], Counter[int]]] = field(init=False, repr=False)
    unigram: np.ndarray = field(init=False, repr=False)

    def fit(self, sequences: Sequence[np.ndarray]) -> NGram:
        if self.order < 1:
            raise ValueError("n-gram order must be >= 1")
        self.tables = [defaultdict(Counter) for _ in range(self.order)]  # tables[n]: contexts of length n
        counts = np.zeros(self.vocab_size, dtype=np.float64)
        for seq in sequences:
            ids = [int(i) for i in seq]
            counts += np.bincount(np.asarray(ids, dtype=np.int64), minlength=self.vocab_size)
            for pos, target in enumerate(ids):
                for n in range(1, min(self.order - 1, pos) + 1):
                    self.tables[n][tuple(ids[pos - n : pos])][target] += 1
        self.unigram = counts / max(counts.sum(), 1.0)
        return self

    def score_context(self, context: Sequence[int]) -> np.ndarray:
        """Normalised back-off scores for the next id after ``context`` (oldest first)."""
        scores = self.unigram.copy()
        context = tuple(int(i) for i in context)
        for n in range(1, min(self.order - 1, len(context)) + 1):
            seen = self.tables[n].get(context[-n:])
            if not seen:
                break  # a longer context is unseen too: backing off scales every score alike
            total = sum(seen.values())
            scores *= self.alpha
            for target, count in seen.items():
                scores[target] = count / total
        return scores / scores.sum()

    def scores(self, x: np.ndarray) -> np.ndarray:
        out = np.empty((len(x), self.vocab_size), dtype=np.float64)
        cache: dict[tuple[int, ...], np.ndarray] = {}
        keep = max(self.order - 1, 0)
        for row, window in enumerate(np.asarray(x)):
            key = tuple(int(i) for i in window[len(window) - keep :]) if keep else ()
            if key not in cache:
                cache[key] = self.score_context(key)
            out[row] = cache[key]
        return out


def choose_ngram(
    train: Sequence[np.ndarray],
    x_val: np.ndarray,
    y_val: np.ndarray,
    vocab_size: int,
    max_order: int,
    alpha: float = 0.4,
) -> tuple[NGram, dict[int, float]]:
    """Fit orders 1..max_order on train, keep the best validation top-1 (ties -> the smaller order)."""
    fitted = NGram(vocab_size, order=max_order, alpha=alpha).fit(train)
    by_order: dict[int, float] = {}
    best_order, best_top1 = 1, -1.0
    for order in range(1, max_order + 1):
        model = _truncated(fitted, order)
        top1 = float(topk_hits(model.scores(x_val), y_val, 1).mean()) if len(y_val) else 0.0
        by_order[order] = top1
        if top1 > best_top1:
            best_order, best_top1 = order, top1
    return _truncated(fitted, best_order), by_order


def _truncated(model: NGram, order: int) -> NGram:
    """The same counts seen as a lower-order model (tables of shorter contexts are shared)."""
    view = NGram(model.vocab_size, order=order, alpha=model.alpha)
    view.tables = model.tables[:order]
    view.unigram = model.unigram
    return view
