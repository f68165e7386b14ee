"""Pass 1 of the cleaner: lines -> event rows -> Arrow record batches -> an Arrow IPC part file.

Why it looks the way it does: this is the hot loop. A block of JSON lines is decoded on the typed
fast path (``fastpath``: msgspec picks the metadata fields in C, nothing else is built); a line it
does not take is parsed with orjson and picked by ``readers.event_row`` (one tuple per event), which
decides every reject. Every ``batch_rows`` events are transposed at once into Arrow arrays
(timestamps parsed by Arrow, vectorised) and written as one record batch (one row group of the final
Parquet file). For merging stages later, each row leaves only a 64-bit hash of its audit ID and its
stage rank (9 bytes).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from perfspec.audit.accept import accept_rows, as_row
from perfspec.audit.fastpath import (
    EVENT_DECODER,
    Event,
    may_hold_huge_number,
    release_scratch,
)
from perfspec.audit.readers import (
    BadDocument,
    NotAnEvent,
    Row,
    csv_row,
    event_row,
    expand,
    iter_documents,
)
from perfspec.audit.rejects import RejectWriter
from perfspec.audit.schema import (
    EVENT_COLUMNS,
    EVENTS_SCHEMA,
    MAX_AUDIT_ID_CHARS,
    STAGE_RANK,
)
from perfspec.audit.sources import STREAM_ERRORS, LineTooLong, OpenedSource, StreamBroken, TrailingGarbage
from perfspec.settings import CleanSettings

#: Dictionary encoding only where values repeat (measured: faster and smaller than on every column).
DICTIONARY_COLUMNS = [
    "stage", "verb", "username", "user_agent", "source_ip", "namespace", "resource", "subresource",
    "api_group", "api_version", "response_code", "level", "source_file",
]  # fmt: skip
PARQUET_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    "use_dictionary": DICTIONARY_COLUMNS,
    "write_statistics": True,
}
#: Pass-1 parts are Arrow IPC files (zstd buffers): ~3x cheaper to write and read back than Parquet,
#: and pass 2 writes ``events.parquet`` from them in every case (so Parquet is encoded once).
PART_OPTIONS = pa.ipc.IpcWriteOptions(compression="zstd")

_STAGES = pa.array(list(STAGE_RANK))
# Fixed odd 64-bit weights: the audit-ID hash is the same in every run, process and machine.
_HASH_WEIGHTS = np.random.default_rng(0x9E3779B9).integers(
    1, 2**63, size=MAX_AUDIT_ID_CHARS * 4 // 8 + 1, dtype=np.uint64
) | np.uint64(1)


@dataclass
class FileCounts:
    """What one input file contributed (``read == kept + duplicates + rejected`` per file too)."""

    file: str
    format: str
    compression: str
    read: int = 0
    kept: int = 0
    duplicates: int = 0
    rejected: int = 0
    complete: bool = True
    error: str | None = None


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


class Collector:
    """Pass 1 for one part: readable events into an Arrow IPC file in log order, plus hash/rank arrays.

    Line numbers are those of the lines it is given (a parallel worker's are relative to its range).
    """

    def __init__(self, path: Path, settings: CleanSettings, rejects: RejectWriter) -> None:
        self.path = path
        self.settings = settings
        self.rejects = rejects
        self.writer: pa.ipc.RecordBatchFileWriter | None = None
        self.hashes: list[np.ndarray] = []
        self.ranks: list[np.ndarray] = []
        self.file_rows: list[int] = []  # valid rows per file, in file order
        self.rows: list[Row | Event] = []  # tuples, or fast-path Events when ``tuples`` is False
        self.tuples = False  # some of ``rows`` may be tuples (the slow paths append them)
        self.lines: list[int] = []
        self.min_ts: Any = None
        self.max_ts: Any = None
        self.rejected_by_file: list[int] = []
        self.rows_written = 0
        self._pending_read = 0

    # -- reading -------------------------------------------------------------------------------------
    def read_source(self, source: OpenedSource) -> FileCounts:
        counts = FileCounts(source.display, source.format, source.compression)
        self.begin_file()
        before = self.rejects.count
        reader = {
            "jsonl": self._read_jsonl,
            "json-document": self._read_documents,
            "logstash-csv": self._read_csv,
            "empty": lambda _source, _counts: None,
        }[source.format]
        try:
            reader(source, counts)
        except StreamBroken as broken:
            reason = (
                "trailing-garbage" if isinstance(broken.__cause__, TrailingGarbage) else "truncated-stream"
            )
            self._reject(source.display, broken.next_line, reason, broken.tail, broken.detail)
            counts.read += 1
            counts.complete = False
            counts.error = broken.detail
        self._flush(source.display)
        counts.rejected = self.rejects.count - before
        self.rejected_by_file.append(counts.rejected)
        return counts

    def begin_file(self) -> None:
        """Start counting rows for the next file (rows of one file are contiguous in a part)."""
        self.file_rows.append(0)

    def _reject(self, file: str, line: int, reason: str, raw: Any, detail: str) -> None:
        self.rejects.add(file, line, reason, raw, detail)

    def _add_value(self, value: Any, file: str, line_no: int) -> int:
        """Add one parsed JSON value (an Event, an EventList or an array); returns records read."""
        self.tuples = True
        try:
            self.rows.append(event_row(value))
            self.lines.append(line_no)
            return 1
        except NotAnEvent as problem:
            items = expand(value)
            if items is None:
                self._reject(file, line_no, problem.reason, value, problem.detail)
                return 1
        for item in items:
            try:
                self.rows.append(event_row(item))
                self.lines.append(line_no)
            except NotAnEvent as problem:
                self._reject(file, line_no, problem.reason, item, problem.detail + " (list item)")
        return len(items)

    def _read_jsonl(self, source: OpenedSource, counts: FileCounts) -> None:
        self.read_jsonl_lines(source.line_blocks(self.settings.max_line_bytes), source.display, counts)

    def read_jsonl_lines(self, blocks: Iterator[Any], file: str, counts: FileCounts) -> None:
        """JSON lines from ``split_lines`` blocks (a whole file, or a parallel worker's byte range)."""
        try:
            self._jsonl_blocks(blocks, file)
        finally:
            counts.read += self._pending_read
            self._pending_read = 0
            self._flush(file)

    def _jsonl_blocks(self, blocks: Iterator[Any], file: str) -> None:
        """The hot loop. A block whose lines all decode on the typed fast path (``fastpath``) is
        taken whole; otherwise each line is tried on the fast path, then parsed with orjson and
        picked by ``event_row`` (which gives every reject its reason, as the fast path never does)."""
        loads = orjson.loads
        decode = EVENT_DECODER.decode
        decode_error = orjson.JSONDecodeError
        read = 0
        for block in blocks:
            if block.__class__ is LineTooLong:
                self._too_long(file, block)
                self._pending_read += 1
                continue
            line_no, lines = block
            data = b"\n".join(lines)
            fast = not may_hold_huge_number(data)
            utf8 = fast and (data.isascii() or all(map(_is_utf8, lines)))  # decoding per line: less memory
            del data
            if utf8:
                try:
                    events = list(map(decode, lines))
                except Exception:  # any line the fast path does not take: line by line below
                    events = None
                if events is not None:
                    self.rows.extend(events)
                    self.lines.extend(range(line_no, line_no + len(lines)))
                    self._pending_read += len(lines)
                    if len(self.rows) >= self.settings.batch_rows:
                        self._flush(file)
                    continue
            rows_append = self.rows.append
            lines_append = self.lines.append
            line_no -= 1
            for line in lines:
                line_no += 1
                if not line:
                    continue
                if fast and (utf8 or line.isascii() or _is_utf8(line)):
                    try:
                        rows_append(decode(line))
                        lines_append(line_no)
                        read += 1
                        continue
                    except Exception:
                        pass
                try:
                    value = loads(line)
                except decode_error as exc:
                    if line.isspace():
                        continue
                    self._reject(file, line_no, "invalid-json", line, str(exc))
                    read += 1
                    continue
                self.tuples = True
                try:
                    rows_append(event_row(value))
                    lines_append(line_no)
                    read += 1
                except NotAnEvent:
                    read += self._add_value(value, file, line_no)
            self._pending_read += read
            read = 0
            if len(self.rows) >= self.settings.batch_rows:
                self._flush(file)

    def _too_long(self, file: str, marker: LineTooLong) -> None:
        self._reject(
            file,
            marker.line_no,
            "line-too-long",
            marker.prefix,
            f"{marker.length} bytes, over max_line_bytes={self.settings.max_line_bytes}",
        )

    def _read_documents(self, source: OpenedSource, counts: FileCounts) -> None:
        file = source.display
        last_line = 1
        documents = iter_documents(source.byte_blocks(), self.settings.max_document_bytes)
        try:
            for line_no, value in documents:
                last_line = line_no
                if value.__class__ is BadDocument:
                    self._reject(file, line_no, "invalid-json", value.text, value.detail)
                    counts.read += 1
                else:
                    counts.read += self._add_value(value, file, line_no)
                if len(self.rows) >= self.settings.batch_rows:
                    self._flush(file)
        except STREAM_ERRORS as exc:
            detail = f"{source.compression} stream is broken after the document at line {last_line} ({exc})"
            raise StreamBroken(last_line + 1, b"", detail) from exc

    def _read_csv(self, source: OpenedSource, counts: FileCounts) -> None:
        file = source.display
        max_line = self.settings.max_line_bytes
        self.tuples = True
        for block in source.line_blocks(max_line):
            if isinstance(block, LineTooLong):
                self._too_long(file, block)
                counts.read += 1
                continue
            line_no, lines = block
            for offset, line in enumerate(lines):
                if not line.strip():
                    continue
                counts.read += 1
                try:
                    text = line.decode("utf-8").rstrip("\r")
                    self.rows.append(csv_row(text))
                    self.lines.append(line_no + offset)
                except UnicodeDecodeError as exc:
                    self._reject(file, line_no + offset, "bad-encoding", line, str(exc))
                except NotAnEvent as problem:
                    self._reject(file, line_no + offset, problem.reason, line, problem.detail)
            if len(self.rows) >= self.settings.batch_rows:
                self._flush(file)
                self.tuples = True

    # -- writing -------------------------------------------------------------------------------------
    def _flush(self, file: str) -> None:
        """Turn the buffered rows into a record batch (a row group of the final file); hashes/ranks."""
        if not self.rows:
            return
        rows, lines = self.rows, self.lines
        accepted = accept_rows(rows, mixed=self.tuples)
        self.rows = []
        self.lines = []
        self.tuples = False
        for index, reason, detail in accepted.refused:
            row = dict(zip(EVENT_COLUMNS, as_row(rows[index]), strict=True))
            self._reject(file, lines[index], reason, row, detail)
        arrays = accepted.arrays
        if arrays is None:
            return
        if accepted.refused:
            lines = [lines[index] for index in accepted.kept]
        count = len(lines)
        received = arrays[EVENT_COLUMNS.index("request_received_at")]
        arrays.append(pa.array([file] * count, pa.string()))
        arrays.append(pa.array(lines, pa.int64()))
        batch = pa.RecordBatch.from_arrays(arrays, schema=EVENTS_SCHEMA)
        if self.writer is None:
            self.writer = pa.ipc.new_file(self.path, EVENTS_SCHEMA, options=PART_OPTIONS)
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
        release_scratch()
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


def _is_utf8(data: bytes) -> bool:
    """Valid UTF-8 (orjson accepts exactly that; msgspec does not check skipped strings)."""
    if data.isascii():
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


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
