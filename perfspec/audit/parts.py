"""Pass 1's output: one Arrow IPC "part" of accepted event rows, and what pass 2 merges on.

Why its own module: reading (``pass1.PartReader``: lines, documents, CSV rows -> event rows and
rejects) and writing (here: rows -> the acceptance rule -> record batches, 64-bit audit-ID hashes and
stage ranks, the time range) change for different reasons. Every ``batch_rows`` rows become one record
batch (one row group of the final Parquet file); for merging stages later, each row leaves only a
64-bit hash of its audit ID and its stage rank (9 bytes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from perfspec.audit.accept import accept_rows, as_row
from perfspec.audit.fastpath import Event
from perfspec.audit.readers import Row
from perfspec.audit.schema import EVENT_COLUMNS, EVENTS_SCHEMA, MAX_AUDIT_ID_CHARS, STAGE_RANK

#: Dictionary encoding only where values repeat (measured: faster and smaller than on every column).
#: Request URIs and object names repeat too (the paper's 16,474 Logstash events: 1,910 distinct URIs, 764
#: names): dictionary-encoded they encode ~12 % faster and the file is ~11 % smaller; a column whose
#: dictionary outgrows its page limit falls back to plain encoding by itself.
DICTIONARY_COLUMNS = [
    "stage", "verb", "username", "user_agent", "source_ip", "namespace", "resource", "subresource", "name",
    "api_group", "api_version", "response_code", "request_uri", "level", "source_file",
]  # fmt: skip
PARQUET_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    "use_dictionary": DICTIONARY_COLUMNS,
    "write_statistics": True,
}
#: Pass-1 parts are Arrow IPC files: cheaper to write and read back than Parquet, and pass 2 writes
#: ``events.parquet`` from them in every case (so Parquet is encoded once). Uncompressed when the disk
#: has room (``clean.parts_compression``, resolved by ``clean``): measured on 1 GB of JSON lines, parts
#: of 0.39 GB and the whole clean ~10 % faster than with LZ4 (0.14 GB). LZ4, not zstd, when compressed:
#: on 1.19 M rows, 0.27 + 0.13 s to write + read (zstd 0.51 + 0.22), parts ~1.7x larger.
PART_OPTIONS = {
    "none": pa.ipc.IpcWriteOptions(compression=None),
    "lz4": pa.ipc.IpcWriteOptions(compression="lz4"),
}

_STAGES = pa.array(list(STAGE_RANK))
# Fixed odd 64-bit weights: the audit-ID hash is the same in every run, process and machine.
_HASH_WEIGHTS = np.random.default_rng(0x9E3779B9).integers(
    1, 2**63, size=MAX_AUDIT_ID_CHARS * 4 // 8 + 1, dtype=np.uint64
) | np.uint64(1)


@dataclass
class PartResult:
    """A finished pass-1 part: its Arrow IPC file (None if empty), rows, hash/rank arrays, time range."""

    path: Path | None
    rows: int
    hashes: np.ndarray
    ranks: np.ndarray
    min_ts_us: int | None
    max_ts_us: int | None
    line_offset: int = 0
    file_rows: list[int] = field(default_factory=list)


Refused = tuple[int, str, str, dict[str, Any]]
"""A row the acceptance rule refused: (its line, reason, detail, the row as a dict)."""


class PartWriter:
    """The accepted rows of one part, in log order, into an Arrow IPC file; hash/rank arrays beside."""

    def __init__(self, path: Path, compression: str = "lz4") -> None:
        self.path = path
        self.options = PART_OPTIONS[compression]
        self.writer: pa.ipc.RecordBatchFileWriter | None = None
        self.hashes: list[np.ndarray] = []
        self.ranks: list[np.ndarray] = []
        self.file_rows: list[int] = []  # accepted rows per file, in file order
        self.min_ts: Any = None
        self.max_ts: Any = None
        self.rows_written = 0

    def begin_file(self) -> None:
        """Start counting rows for the next file (rows of one file are contiguous in a part)."""
        self.file_rows.append(0)

    def write(self, file: str, rows: Sequence[Row | Event], lines: list[int], mixed: bool) -> list[Refused]:
        """Write the rows the acceptance rule keeps as one record batch; return the refused ones."""
        accepted = accept_rows(rows, mixed=mixed)
        refused = [
            (lines[index], reason, detail, dict(zip(EVENT_COLUMNS, as_row(rows[index]), strict=True)))
            for index, reason, detail in accepted.refused
        ]
        arrays = accepted.arrays
        if arrays is None:
            return refused
        if accepted.refused:
            lines = [lines[index] for index in accepted.kept]
        self.write_arrays(file, arrays, pa.array(lines, pa.int64()))
        return refused

    def write_arrays(self, file: str, arrays: list[pa.Array], lines: pa.Array) -> None:
        """Write accepted rows given as ``EVENT_COLUMNS`` arrays, with their line numbers."""
        count = len(lines)
        if count == 0:
            return
        received = arrays[EVENT_COLUMNS.index("request_received_at")]
        arrays = [*arrays, pa.array([file], pa.string()).take(np.zeros(count, np.int32)), lines]
        batch = pa.RecordBatch.from_arrays(arrays, schema=EVENTS_SCHEMA)
        if self.writer is None:
            self.writer = pa.ipc.new_file(self.path, EVENTS_SCHEMA, options=self.options)
        self.writer.write_batch(batch)
        self.hashes.append(hash_audit_ids(batch.column(0)))
        self.ranks.append(pc.index_in(batch.column(1), value_set=_STAGES).to_numpy().astype(np.int8))
        self.file_rows[-1] += count
        self.rows_written += count
        low, high = pc.min_max(received).values()
        if low.is_valid:
            self.min_ts = low if self.min_ts is None or low.value < self.min_ts.value else self.min_ts
            self.max_ts = high if self.max_ts is None or high.value > self.max_ts.value else self.max_ts

    def close(self) -> PartResult:
        """Finish the part file; what pass 2 needs to know about it."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        hashes = np.concatenate(self.hashes) if self.hashes else np.empty(0, np.uint64)
        ranks = np.concatenate(self.ranks) if self.ranks else np.empty(0, np.int8)
        self.hashes, self.ranks = [], []
        return PartResult(
            self.path if self.rows_written else None,
            self.rows_written,
            hashes,
            ranks,
            self.min_ts.value if self.min_ts is not None else None,
            self.max_ts.value if self.max_ts is not None else None,
            file_rows=list(self.file_rows),
        )


def hash_audit_ids(ids: pa.Array) -> np.ndarray:
    """64-bit hashes of an Arrow string array of audit IDs, vectorised (no Python per row).

    The UTF-8 bytes of each ID, zero-padded to whole 64-bit words, are combined with fixed random
    odd weights (a linear form, so the padding width does not matter), mixed with the length and
    finalised with splitmix64. Equal IDs always hash equal; distinct IDs collide with probability
    about 2**-64 per pair.
    """
    count = len(ids)
    if count == 0:
        return np.empty(0, np.uint64)
    ids = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
    offsets = np.frombuffer(ids.buffers()[1], dtype=np.int32, count=count + 1, offset=ids.offset * 4)
    data = np.frombuffer(ids.buffers()[2], dtype=np.uint8)
    lengths = np.diff(offsets)
    width = (int(lengths.max()) + 7) // 8 * 8
    starts = offsets[:-1]
    first = int(lengths[0])
    if (lengths == first).all():  # the usual case: every ID the same length (UUIDs): a plain reshape
        matrix = data[starts[0] : starts[0] + count * first].reshape(count, first)
        if first < width:
            matrix = np.concatenate([matrix, np.zeros((count, width - first), np.uint8)], axis=1)
    else:
        columns = np.arange(width)
        index = np.minimum(starts[:, None] + columns[None, :], max(len(data) - 1, 0))
        matrix = np.where(columns[None, :] < lengths[:, None], data[index], 0).astype(np.uint8)
    words = np.ascontiguousarray(matrix).view("<u8")
    hashed = words @ _HASH_WEIGHTS[: words.shape[1]]
    hashed ^= lengths.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    hashed ^= hashed >> np.uint64(30)
    hashed *= np.uint64(0xBF58476D1CE4E5B9)
    hashed ^= hashed >> np.uint64(27)
    hashed *= np.uint64(0x94D049BB133111EB)
    hashed ^= hashed >> np.uint64(31)
    return hashed
