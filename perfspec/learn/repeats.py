"""Verbatim repeats of long earlier spans in an action sequence, and their removal.

Why: the paper's ``events-dataset.txt`` is two identical copies of one session. Any split of such a
file puts the test windows into training, and every score measures memorisation. A span of at least
``min_length`` actions that already occurred earlier, verbatim, is not new data: by default it is removed
before the split (the run says so), and ``--keep-repeats`` keeps it.

How: every position whose next ``min_length`` actions occurred earlier (non-overlapping) starts a
repeat; overlapping starts are merged into maximal spans. Rolling polynomial hashes over the ids make
this linear in the sequence length; each candidate is confirmed by comparing the ids themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MIN_REPEAT_FLOOR = 100  # never call a span shorter than this a copy, whatever the fraction says
_BASE = np.uint64(1_000_003)


@dataclass(frozen=True)
class Repeat:
    """``[start, end)`` in the original sequence repeats ``[source, source + end - start)`` verbatim."""

    start: int
    end: int
    source: int

    @property
    def length(self) -> int:
        return self.end - self.start

    def to_dict(self) -> dict[str, int]:
        return {"start": self.start, "end": self.end, "source": self.source, "length": self.length}


def repeat_threshold(n: int, min_actions: int, min_fraction: float) -> int:
    """Shortest span called a repeat: ``min_actions`` or ``min_fraction`` of ``n``, whichever is
    smaller, but never below ``MIN_REPEAT_FLOOR``."""
    return max(MIN_REPEAT_FLOOR, min(min_actions, int(np.ceil(min_fraction * n))))


def _codes(actions: Sequence[str]) -> np.ndarray:
    table: dict[str, int] = {}
    return np.fromiter((table.setdefault(a, len(table) + 1) for a in actions), dtype=np.uint64)


def _window_hashes(ids: np.ndarray, length: int) -> np.ndarray:
    """Polynomial hash (mod 2**64, by overflow) of every ``length``-span of ``ids``."""
    n = len(ids)
    prefix = np.zeros(n + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        top = np.uint64(1)
        for _ in range(length):
            top = top * _BASE
        # prefix[i] = sum ids[j] * BASE**(i-1-j): built by a running multiply-add
        acc = np.uint64(0)
        for i in range(n):
            acc = acc * _BASE + ids[i]
            prefix[i + 1] = acc
        return prefix[length:] - prefix[: n - length + 1] * top


def find_repeats(actions: Sequence[str], min_length: int) -> list[Repeat]:
    """Maximal spans of at least ``min_length`` actions that occurred earlier, verbatim, without overlap.

    Linear: a position is compared with the first earlier occurrence of its hash only, and a confirmed
    repeat is skipped as a whole (a sequence of one action repeated a million times costs one pass).
    """
    n = len(actions)
    if n < 2 * min_length:
        return []
    ids = _codes(actions)
    hashes = _window_hashes(ids, min_length).tolist()
    first: dict[int, int] = {}
    for pos, value in enumerate(hashes):
        first.setdefault(value, pos)
    repeats: list[Repeat] = []
    pos = 0
    while pos < len(hashes):
        source = first[hashes[pos]]
        if source + min_length > pos or not np.array_equal(
            ids[source : source + min_length], ids[pos : pos + min_length]
        ):
            pos += 1
            continue
        end = pos + min_length
        # extend while the copy keeps matching its source (and stays after it)
        while end < n and source + (end - pos) < pos and ids[end] == ids[source + (end - pos)]:
            end += 1
        repeats.append(Repeat(pos, end, source))
        pos = end
    return repeats


@dataclass(frozen=True)
class Deduplicated:
    """The sequence without its repeats, and the kept pieces (windows must not cross a cut)."""

    actions: list[str]
    repeats: list[Repeat]
    pieces: list[tuple[int, int]]  # [start, end) in the deduplicated sequence

    @property
    def removed(self) -> int:
        return sum(r.length for r in self.repeats)


def remove_repeats(actions: Sequence[str], min_length: int) -> Deduplicated:
    """``actions`` without every repeat ``find_repeats`` reports (the earlier copy is kept)."""
    repeats = find_repeats(actions, min_length)
    kept: list[str] = []
    pieces: list[tuple[int, int]] = []
    cursor = 0
    for repeat in [*repeats, Repeat(len(actions), len(actions), 0)]:
        if repeat.start > cursor:
            pieces.append((len(kept), len(kept) + repeat.start - cursor))
            kept.extend(actions[cursor : repeat.start])
        cursor = repeat.end
    return Deduplicated(kept, repeats, pieces)
