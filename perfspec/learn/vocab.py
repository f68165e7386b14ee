"""Action vocabulary: names <-> ids, with ``<unk>`` at index 0.

Why an explicit unknown token: a model in production meets actions it never saw in training (a new
CRD, a new verb); they must map to one known id instead of crashing the predictor. Ids are ordered by
training frequency (ties by name) so the same corpus always gives the same ids.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from perfspec.errors import InputError
from perfspec.fileio import write_json_atomic

UNK = "<unk>"


@dataclass(frozen=True)
class Vocabulary:
    """``tokens[0]`` is ``<unk>``; ``counts`` are the training counts (0 for ``<unk>``)."""

    tokens: tuple[str, ...]
    counts: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.tokens or self.tokens[0] != UNK:
            raise InputError(f"vocabulary must start with {UNK}")
        object.__setattr__(self, "_index", {t: i for i, t in enumerate(self.tokens)})

    @classmethod
    def from_counts(cls, counts: Counter[str], min_count: int = 1) -> Vocabulary:
        kept = sorted(((t, c) for t, c in counts.items() if c >= min_count), key=lambda tc: (-tc[1], tc[0]))
        rare = sum(c for c in counts.values() if c < min_count)
        return cls((UNK, *(t for t, _ in kept)), (rare, *(c for _, c in kept)))

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: object) -> bool:
        return token in self._index  # type: ignore[attr-defined]

    def id_of(self, token: str) -> int:
        return self._index.get(token, 0)  # type: ignore[attr-defined]

    def encode(self, tokens: Iterable[str]) -> np.ndarray:
        return np.fromiter((self.id_of(t) for t in tokens), dtype=np.int32)

    def decode(self, ids: Sequence[int] | np.ndarray) -> list[str]:
        return [self.tokens[int(i)] for i in ids]

    def to_json(self) -> dict:
        return {"unknown": UNK, "tokens": list(self.tokens), "counts": list(self.counts)}

    def save(self, path: Path) -> None:
        write_json_atomic(Path(path), self.to_json())

    @classmethod
    def from_json(cls, payload: dict) -> Vocabulary:
        tokens = payload.get("tokens")
        if not isinstance(tokens, list) or not tokens:
            raise InputError("vocab.json has no token list")
        counts = payload.get("counts") or [0] * len(tokens)
        return cls(tuple(tokens), tuple(int(c) for c in counts))

    @classmethod
    def load(cls, path: Path) -> Vocabulary:
        path = Path(path)
        if not path.is_file():
            raise InputError(f"vocabulary not found: {path}")
        try:
            return cls.from_json(json.loads(path.read_text()))
        except json.JSONDecodeError as error:
            raise InputError(f"vocab.json is not valid JSON: {path} ({error})") from error
