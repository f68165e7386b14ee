"""The most frequent actions, whatever the context: the floor every other model must clear."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np


@dataclass(frozen=True)
class MostFrequent:
    """Ranks actions by their training frequency."""

    family: ClassVar[str] = "most_frequent"
    distribution: np.ndarray
    window: int

    @property
    def classes(self) -> int:
        return int(self.distribution.shape[0])

    @classmethod
    def fit(cls, sequences: Iterable[np.ndarray], classes: int, window: int) -> MostFrequent:
        counts = np.zeros(classes, dtype=np.float64)
        for seq in sequences:
            counts += np.bincount(np.asarray(seq, dtype=np.int64), minlength=classes)
        return cls((counts / max(counts.sum(), 1.0)).astype(np.float32), window)

    def probabilities(self, ids: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.distribution, (len(ids), self.classes)).copy()

    def to_arrays(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {"family": self.family, "window": self.window}, {"distribution": self.distribution}

    @classmethod
    def from_arrays(cls, meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> MostFrequent:
        distribution = np.asarray(arrays["distribution"], dtype=np.float32)
        if distribution.ndim != 1:
            raise ValueError("most_frequent: distribution must be one row")
        return cls(distribution, int(meta["window"]))
