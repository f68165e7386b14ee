"""A neural model's probabilities interpolated with the n-gram's: ``w * neural + (1 - w) * ngram``.

Why: the n-gram is sharp where a context was seen often; the network generalises across similar
contexts. Their errors differ, so a weighted average of the two distributions often beats both. ``w`` is
fitted on the validation windows (mean log-likelihood over a grid), never on the test part; ``w = 0``
is the n-gram itself, so on validation the mixture is never worse than its n-gram.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from perfspec.learn.families import Scorer, scorer_from_arrays

WEIGHTS = tuple(round(w, 2) for w in np.linspace(0.0, 1.0, 21))


@dataclass(frozen=True)
class Mixture:
    family: ClassVar[str] = "mixture"
    neural: Scorer
    ngram: Scorer
    weight: float

    @property
    def window(self) -> int:
        return self.neural.window

    @property
    def classes(self) -> int:
        return self.neural.classes

    @classmethod
    def fit(cls, neural: Scorer, ngram: Scorer, x_val: np.ndarray, y_val: np.ndarray) -> Mixture:
        """The grid weight with the best validation log-likelihood (ties: more n-gram)."""
        if neural.classes != ngram.classes:
            raise ValueError("mixture parts disagree on the vocabulary")
        known = np.asarray(y_val) != 0
        if not known.any():
            return cls(neural, ngram, 0.5)
        x, y = np.asarray(x_val)[known], np.asarray(y_val)[known]
        rows = np.arange(len(y))
        p_neural = neural.probabilities(x)[rows, y]
        p_ngram = ngram.probabilities(x)[rows, y]
        best, best_ll = 0.0, -np.inf
        for weight in WEIGHTS:
            ll = float(np.mean(np.log(weight * p_neural + (1 - weight) * p_ngram + 1e-12)))
            if ll > best_ll + 1e-12:
                best, best_ll = weight, ll
        return cls(neural, ngram, best)

    def probabilities(self, ids: np.ndarray) -> np.ndarray:
        return self.weight * self.neural.probabilities(ids) + (1 - self.weight) * self.ngram.probabilities(
            ids
        )

    def to_arrays(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        neural_meta, neural_arrays = self.neural.to_arrays()
        ngram_meta, ngram_arrays = self.ngram.to_arrays()
        meta = {"family": self.family, "weight": self.weight, "neural": neural_meta, "ngram": ngram_meta}
        arrays = {f"neural.{k}": v for k, v in neural_arrays.items()}
        arrays |= {f"ngram.{k}": v for k, v in ngram_arrays.items()}
        return meta, arrays

    @classmethod
    def from_arrays(cls, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> Mixture:
        parts = []
        for name in ("neural", "ngram"):
            prefix = f"{name}."
            own = {k.removeprefix(prefix): v for k, v in arrays.items() if k.startswith(prefix)}
            parts.append(scorer_from_arrays(meta[name], own))
        weight = float(meta["weight"])
        if not 0.0 <= weight <= 1.0:
            raise ValueError("mixture weight must be in [0, 1]")
        if parts[0].classes != parts[1].classes:
            raise ValueError("mixture parts disagree on the vocabulary")
        return cls(parts[0], parts[1], weight)
