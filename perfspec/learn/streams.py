"""Actor streams: each requester's own actions as one sequence, split by time over the whole log.

Why: the global stream interleaves the Helm client with a dozen controllers, so a global model must
guess who speaks next; policies are evaluated per requester, and "what will *this* actor do next" is
what the runtime needs. An actor-stream dataset keeps every action, reordered so that each actor's
actions (in log order) are contiguous; ``order`` maps a dataset position back to its log position.

The split is made in log positions (the same chronological 80/10/10 as the global stream) and each
actor's part of every log segment becomes one dataset segment, so every test target is later in the
log than every training target, for every actor. Windows never cross a segment, and are left-padded
with ``<unk>`` (an actor's first actions of a segment have a short history, exactly as a live stream
that just started): every action after the first of its segment is a target.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

Segments = list[tuple[int, int]]


@dataclass(frozen=True)
class StreamLayout:
    """Where each actor's stream lies in an actor-stream dataset.

    ``names[c]``: the actor class of stream ``c``; ``codes[i]``: the stream of dataset position ``i``;
    ``order[i]``: its log position; ``bounds[c]:bounds[c + 1]``: the positions of stream ``c``.
    """

    names: np.ndarray
    codes: np.ndarray
    order: np.ndarray
    bounds: np.ndarray

    @classmethod
    def build(cls, actors: Sequence[str]) -> StreamLayout:
        """Streams of ``actors`` (one actor class per log position), named in sorted order."""
        names, codes = np.unique(np.asarray(actors, dtype=str), return_inverse=True)
        codes = codes.astype(np.int32)
        order = np.lexsort((np.arange(len(codes)), codes)).astype(np.int64)  # by stream, then log order
        return cls(names, codes[order], order, _bounds(codes, len(names)))

    def dataset_segments(self, log_segments: Sequence[tuple[int, int]]) -> Segments:
        """Each actor's part of each ``[start, end)`` of log positions, as dataset segments."""
        out: Segments = []
        for stream in range(len(self.names)):
            first, last = int(self.bounds[stream]), int(self.bounds[stream + 1])
            positions = self.order[first:last]  # increasing: log order within the stream
            for start, end in log_segments:
                lo, hi = np.searchsorted(positions, [start, end])
                if hi > lo:
                    out.append((first + int(lo), first + int(hi)))
        return sorted(out)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {
            "stream_names": self.names.astype(str),
            "stream_codes": self.codes,
            "stream_order": self.order,
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> StreamLayout | None:
        """The layout saved by ``to_arrays``; None for a global dataset."""
        if "stream_order" not in arrays:
            return None
        names = np.asarray(arrays["stream_names"]).astype(str)
        codes = np.asarray(arrays["stream_codes"]).astype(np.int32)
        order = np.asarray(arrays["stream_order"]).astype(np.int64)
        return cls(names, codes, order, _bounds(codes, len(names)))

    def log_ids(self, ids: np.ndarray) -> np.ndarray:
        """``ids`` (dataset order) back in log order: the global stream."""
        out = np.empty_like(ids)
        out[self.order] = ids
        return out


def _bounds(codes: np.ndarray, streams: int) -> np.ndarray:
    """Where each stream starts in dataset order (and where the last ends): counts, accumulated."""
    bounds = np.zeros(streams + 1, dtype=np.int64)
    bounds[1:] = np.cumsum(np.bincount(codes, minlength=streams))
    return bounds


def padded_contexts(
    ids: np.ndarray, segments: Sequence[tuple[int, int]], positions: np.ndarray, window: int
) -> np.ndarray:
    """For each target position, the ``window`` ids before it inside its segment, left-padded with 0."""
    out = np.zeros((len(positions), window), dtype=np.int32)
    starts = np.array([a for a, _ in segments], dtype=np.int64)
    ends = np.array([b for _, b in segments], dtype=np.int64)
    for row, position in enumerate(np.asarray(positions, dtype=np.int64)):
        index = int(np.searchsorted(starts, position, side="right")) - 1
        if index < 0 or position >= ends[index]:
            continue  # not inside a segment: no history
        history = ids[max(int(starts[index]), int(position) - window) : int(position)]
        if len(history):
            out[row, window - len(history) :] = history
    return out
