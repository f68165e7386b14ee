"""Interpolated Kneser–Ney n-gram: the strong, honest baseline (and a family a champion may come from).

Why Kneser–Ney: helm installs replay request patterns, so counts of short contexts predict well, but
stupid back-off (the first version) gives unseen continuations arbitrary scores. Interpolated KN
(Chen & Goodman 1999) discounts every seen count by ``D`` and gives the freed mass to the next shorter
context, whose counts are *continuation* counts (in how many distinct contexts an action follows), down
to a uniform floor, so every action has a proper probability:

    P(w | h) = max(c(h w) - D, 0) / c(h)  +  D * N1+(h .) / c(h) * P(w | h without its oldest action)

``D`` per context length from the count-of-counts (``n1 / (n1 + 2 n2)``). Counts never cross a
segment boundary. The order is a hyper-parameter chosen by cross-validation, never on the test part.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

_Table = dict[tuple[int, ...], tuple[np.ndarray, np.ndarray, float, int]]  # targets, counts, total, types


def _discount(counts: Sequence[float]) -> float:
    n1 = sum(1 for c in counts if c == 1)
    n2 = sum(1 for c in counts if c == 2)
    if n1 == 0 or n2 == 0:
        return 0.5
    return float(min(0.95, max(0.1, n1 / (n1 + 2 * n2))))


@dataclass(frozen=True)
class NGram:
    """``tables[m]``: context of ``m`` ids -> (targets, counts, total, distinct targets)."""

    family: ClassVar[str] = "ngram"
    classes: int
    window: int
    order: int
    discounts: tuple[float, ...]
    tables: tuple[_Table, ...] = field(repr=False)

    @classmethod
    def fit(cls, sequences: Sequence[np.ndarray], classes: int, window: int, order: int) -> NGram:
        """Count within each sequence; the highest order uses raw counts, lower ones continuation counts."""
        if order < 1:
            raise ValueError("n-gram order must be >= 1")
        grams: list[Counter[tuple[int, ...]]] = [Counter() for _ in range(order + 1)]  # by length
        for seq in sequences:
            ids = [int(i) for i in seq]
            for length in range(1, order + 1):
                grams[length].update(tuple(ids[p : p + length]) for p in range(len(ids) - length + 1))
        pairs: list[Counter[tuple[tuple[int, ...], int]]] = [Counter() for _ in range(order)]
        for gram, count in grams[order].items():
            pairs[order - 1][(gram[:-1], gram[-1])] += count
        for m in range(order - 1):  # continuation: distinct actions seen before (ctx, w)
            for gram in grams[m + 2]:
                pairs[m][(gram[1:-1], gram[-1])] += 1
        tables: list[_Table] = []
        discounts: list[float] = []
        for m in range(order):
            grouped: dict[tuple[int, ...], list[tuple[int, int]]] = {}
            for (context, target), count in pairs[m].items():
                grouped.setdefault(context, []).append((target, count))
            table: _Table = {}
            for context, items in grouped.items():
                items.sort()
                targets = np.array([t for t, _ in items], dtype=np.int64)
                counts = np.array([c for _, c in items], dtype=np.float64)
                table[context] = (targets, counts, float(counts.sum()), len(items))
            tables.append(table)
            discounts.append(_discount(list(pairs[m].values())))
        return cls(classes, window, order, tuple(discounts), tuple(tables))

    def context_probabilities(self, context: Sequence[int]) -> np.ndarray:
        """P(next | context) over all ids; ``context`` oldest first, only its last ``order - 1`` used."""
        p = np.full(self.classes, 1.0 / self.classes)
        context = tuple(int(i) for i in context)
        for m in range(0, min(self.order - 1, len(context)) + 1):
            key = context[len(context) - m :] if m else ()
            entry = self.tables[m].get(key)
            if entry is None:
                continue  # never seen as a context at this length: keep the shorter estimate
            targets, counts, total, types = entry
            discount = self.discounts[m]
            mixed = p * (discount * types / total)
            mixed[targets] += np.maximum(counts - discount, 0.0) / total
            p = mixed
        return p

    def probabilities(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids)
        out = np.empty((len(ids), self.classes), dtype=np.float64)
        keep = self.order - 1
        cache: dict[bytes, np.ndarray] = {}
        for row, window in enumerate(ids):
            context = window[len(window) - keep :] if keep else window[:0]
            key = context.tobytes()
            if key not in cache:
                cache[key] = self.context_probabilities(context)
            out[row] = cache[key]
        return out

    def to_arrays(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        meta = {
            "family": self.family,
            "window": self.window,
            "classes": self.classes,
            "order": self.order,
            "discounts": list(self.discounts),
        }
        arrays: dict[str, np.ndarray] = {}
        for m, table in enumerate(self.tables):
            contexts = sorted(table)
            arrays[f"ctx{m}"] = np.array(contexts, dtype=np.int32).reshape(len(contexts), m)
            offsets = np.zeros(len(contexts) + 1, dtype=np.int64)
            offsets[1:] = np.cumsum([len(table[c][0]) for c in contexts])
            arrays[f"off{m}"] = offsets
            arrays[f"tgt{m}"] = np.concatenate([table[c][0] for c in contexts] or [np.zeros(0)]).astype(
                np.int32
            )
            arrays[f"cnt{m}"] = np.concatenate([table[c][1] for c in contexts] or [np.zeros(0)]).astype(
                np.float32
            )
        return meta, arrays

    @classmethod
    def from_arrays(cls, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> NGram:
        order, classes = int(meta["order"]), int(meta["classes"])
        tables: list[_Table] = []
        for m in range(order):
            contexts, offsets = np.asarray(arrays[f"ctx{m}"]), np.asarray(arrays[f"off{m}"])
            targets, counts = np.asarray(arrays[f"tgt{m}"]), np.asarray(arrays[f"cnt{m}"], dtype=np.float64)
            if contexts.ndim != 2 or contexts.shape[1] != m or len(offsets) != len(contexts) + 1:
                raise ValueError(f"ngram: inconsistent table of context length {m}")
            if len(targets) != len(counts) or (len(offsets) and offsets[-1] != len(targets)):
                raise ValueError(f"ngram: inconsistent counts of context length {m}")
            if len(targets) and (targets.min() < 0 or targets.max() >= classes):
                raise ValueError("ngram: target id outside the vocabulary")
            table: _Table = {}
            for row, context in enumerate(contexts.tolist()):
                a, b = int(offsets[row]), int(offsets[row + 1])
                part = counts[a:b]
                table[tuple(context)] = (targets[a:b].astype(np.int64), part, float(part.sum()), b - a)
            tables.append(table)
        discounts = tuple(float(d) for d in meta["discounts"])
        if len(discounts) != order:
            raise ValueError("ngram: one discount per context length expected")
        return cls(classes, int(meta["window"]), order, discounts, tuple(tables))
