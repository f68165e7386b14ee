"""Model families behind one interface, so every model is scored, compared and served alike.

A ``Scorer`` maps ``(n, window)`` action ids (oldest first) to ``(n, classes)`` next-action
probabilities, and turns itself into plain arrays for ``predictor.npz`` (``to_arrays``) and back
(``scorer_from_arrays``). Families: ``most_frequent`` and ``ngram`` (counts), ``lstm``/``gru``/
``transformer`` (Keras-trained, served by ``perfspec.learn.forward`` in NumPy) and ``mixture`` (a
neural model's probabilities interpolated with the n-gram's). None needs TensorFlow to answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np

from perfspec.learn.network import NEURAL_FAMILIES

FAMILIES = ("most_frequent", "ngram", *NEURAL_FAMILIES, "mixture")


class Scorer(Protocol):
    """What evaluation, the champion rule and the predictor need from a trained model."""

    @property
    def family(self) -> str:
        """The family's name (one of ``FAMILIES``); a class constant in every implementation."""
        ...

    @property
    def window(self) -> int: ...

    @property
    def classes(self) -> int: ...

    def probabilities(self, ids: np.ndarray) -> np.ndarray: ...

    def to_arrays(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]: ...


def scorer_from_arrays(meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> Scorer:
    """The scorer a ``to_arrays`` pair describes; ``ValueError`` if it is not one this code knows."""
    family = meta.get("family")
    if family == "most_frequent":
        from perfspec.learn.families.frequency import MostFrequent

        return MostFrequent.from_arrays(meta, arrays)
    if family == "ngram":
        from perfspec.learn.families.ngram import NGram

        return NGram.from_arrays(meta, arrays)
    if family == "mixture":
        from perfspec.learn.families.mixture import Mixture

        return Mixture.from_arrays(meta, arrays)
    if family in NEURAL_FAMILIES:
        from perfspec.learn.forward import net_from_arrays

        return net_from_arrays(meta, arrays)
    raise ValueError(f"unknown model family {family!r}")
