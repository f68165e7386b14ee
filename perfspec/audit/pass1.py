"""Pass 1 of the cleaner, reading: lines, documents and CSV rows -> event rows (-> ``parts``).

Why it looks the way it does: this is the hot loop. A block of JSON lines is decoded on the typed
fast path (``fastpath``: msgspec picks the metadata fields in C, nothing else is built); a line it
does not take is parsed with orjson and picked by ``readers.event_row`` (one tuple per event), which
decides every reject. Every ``batch_rows`` events go to ``parts.PartWriter`` at once (transposed into
Arrow arrays, timestamps parsed by Arrow, vectorised).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

from perfspec.audit import native
from perfspec.audit.accept import accept_columns, accept_rows, as_row
from perfspec.audit.fastpath import (
    EVENT_DECODER,
    Event,
    may_hold_huge_number,
    refuses_what_orjson_refuses,
    release_scratch,
)
from perfspec.audit.parts import PartResult, PartWriter
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
from perfspec.audit.schema import EVENT_COLUMNS
from perfspec.audit.sources import (
    SNIFF_BYTES,
    STREAM_ERRORS,
    ChunkStreamBroken,
    LineTooLong,
    OpenedSource,
    StreamBroken,
    TrailingGarbage,
)
from perfspec.settings import CleanSettings


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


class PartReader:
    """Pass 1 for one part: the events of the files it reads, as rows for its ``PartWriter`` (every
    ``batch_rows``), and a reject for every record that is not one.

    Line numbers are those of the lines it is given (a parallel worker's are relative to its range).
    """

    def __init__(self, path: Path, settings: CleanSettings, rejects: RejectWriter) -> None:
        self.settings = settings
        self.rejects = rejects
        # "auto" is resolved by clean_sources before any part is written; a PartReader used alone
        # compresses (its caller has not measured the disk)
        compression = settings.parts_compression
        self.part = PartWriter(path, "lz4" if compression == "auto" else compression)
        self.rows: list[Row | Event] = []  # tuples, or fast-path Events when ``tuples`` is False
        self.tuples = False  # some of ``rows`` may be tuples (the slow paths append them)
        self.lines: list[int] = []
        self.rejected_by_file: list[int] = []
        self._pending_read = 0
        self._held: list[tuple[int, str, Any, str]] = []  # rejects until the next flush: then in line order
        self.lines_seen = 0  # lines read by ``read_jsonl_chunks`` (a worker's range: where the next starts)

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
        self.part.begin_file()

    def _reject(self, _file: str, line: int, reason: str, raw: Any, detail: str) -> None:
        """Hold a reject; ``_flush`` writes the held ones in line order (rows the acceptance rule refuses
        are only known at a flush, after later lines' own rejects), so the order never depends on where
        flushes fall: the same file with any block size, worker count or scanner."""
        self._held.append((line, reason, raw, detail))

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
        if self.settings.native and native.available():
            self.read_jsonl_chunks(source.line_chunks(self.settings.max_line_bytes), source.display, counts)
        else:
            self.read_jsonl_lines(source.line_blocks(self.settings.max_line_bytes), source.display, counts)

    # -- the native scanner ----------------------------------------------------------------------------
    def read_jsonl_chunks(
        self, chunks: Iterator[bytes | memoryview | LineTooLong], file: str, counts: FileCounts
    ) -> None:
        """JSON lines from ``split_chunks`` (a whole file, or a parallel worker's byte range): each chunk
        scanned natively (``native``), the lines it defers read by the exact path, in line order."""
        self._flush(file)
        line_no = 1
        try:
            for chunk in chunks:
                if isinstance(chunk, LineTooLong):
                    self._too_long(file, LineTooLong(line_no, chunk.prefix, chunk.length))
                    counts.read += 1
                    line_no += 1
                    continue
                line_no += self._scan_chunk(chunk, line_no, file, counts)
                self._write_held(file)
        except ChunkStreamBroken as broken:
            raise StreamBroken(line_no, broken.tail, broken.detail) from broken.__cause__
        finally:
            self.lines_seen += line_no - 1

    def _scan_chunk(self, chunk: bytes | memoryview, line_no: int, file: str, counts: FileCounts) -> int:
        """One chunk into the part, rows in line order; returns its number of lines."""
        scanned = native.scan(chunk, self.settings.max_line_bytes)
        arrays, refused = accept_columns(scanned.arrays)
        taken = scanned.row_lines
        deferred = scanned.deferred
        if len(refused):  # rows the rule refuses: the exact path gives them their reasons
            deferred = np.sort(np.concatenate([deferred, taken[refused]]))
            taken = np.delete(taken, refused)
        lines = taken.astype(np.int64) + line_no
        counts.read += len(taken)
        if len(deferred):
            arrays, lines = self._exact_lines(chunk, scanned, deferred, line_no, file, counts, arrays, lines)
        self.part.write_arrays(file, arrays, pa.array(lines))
        return scanned.lines

    def _exact_lines(
        self,
        chunk: bytes | memoryview,
        scanned: native.Scanned,
        deferred: np.ndarray,
        line_no: int,
        file: str,
        counts: FileCounts,
        arrays: list[pa.Array],
        lines: np.ndarray,
    ) -> tuple[list[pa.Array], np.ndarray]:
        """The deferred lines of a chunk read as the pure-Python path reads any line (orjson, then
        ``event_row``: the reference), merged with the scanned rows by line; their rejects held."""
        for index in deferred.tolist():
            self._exact_line(file, line_no + index, scanned.line(chunk, index), counts)
        rows, row_lines = self.rows, self.lines
        self.rows, self.lines, self.tuples = [], [], False
        if not rows:
            return arrays, lines
        accepted = accept_rows(rows, mixed=True)
        for index, reason, detail in accepted.refused:
            row = dict(zip(EVENT_COLUMNS, as_row(rows[index]), strict=True))
            self._reject(file, row_lines[index], reason, row, detail)
        if accepted.arrays is None:
            return arrays, lines
        extra = np.asarray([row_lines[index] for index in accepted.kept], dtype=np.int64)
        merged = np.concatenate([lines, extra])
        order = np.argsort(merged, kind="stable")
        arrays = [
            pa.concat_arrays([mine, theirs]).take(order)
            for mine, theirs in zip(arrays, accepted.arrays, strict=True)
        ]
        return arrays, merged[order]

    def _exact_line(self, file: str, line_no: int, line: bytes, counts: FileCounts) -> None:
        """One line the scanner deferred, as ``_jsonl_blocks`` reads a line it cannot take whole."""
        if len(line) > self.settings.max_line_bytes:
            self._too_long(file, LineTooLong(line_no, line[:SNIFF_BYTES], len(line)))
            counts.read += 1
            return
        counts.read += self._read_line(file, line_no, line)

    def _read_line(self, file: str, line_no: int, line: bytes) -> int:
        """The reference read of one line: orjson, then ``event_row`` (which gives every reject its
        reason); returns the records read (0 for a blank line, more for a list of events)."""
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            if line.isspace():
                return 0
            self._reject(file, line_no, "invalid-json", line, str(exc))
            return 1
        self.tuples = True
        try:
            self.rows.append(event_row(value))
            self.lines.append(line_no)
            return 1
        except NotAnEvent:
            return self._add_value(value, file, line_no)

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
        decode = EVENT_DECODER.decode
        read = 0
        for block in blocks:
            if block.__class__ is LineTooLong:
                self._too_long(file, block)
                self._pending_read += 1
                continue
            line_no, lines = block
            data = b"\n".join(lines)
            fast = refuses_what_orjson_refuses() and not may_hold_huge_number(data)
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
                    if self._due():
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
                read += self._read_line(file, line_no, line)
            self._pending_read += read
            read = 0
            if self._due():
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
                if self._due():
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
            if self._due():
                self._flush(file)
                self.tuples = True

    # -- writing -------------------------------------------------------------------------------------
    def _flush(self, file: str) -> None:
        """Hand the buffered rows to the part writer; write the held rejects (with those of the rows the
        acceptance rule refused) in line order."""
        if self.rows:
            rows, lines, mixed = self.rows, self.lines, self.tuples
            self.rows, self.lines, self.tuples = [], [], False
            for line, reason, detail, row in self.part.write(file, rows, lines, mixed):
                self._reject(file, line, reason, row, detail)
        self._write_held(file)

    def _write_held(self, file: str) -> None:
        self._held.sort(key=_line_of)  # stable: a line's own rejects, then its refused rows, in order
        for line, reason, raw, detail in self._held:
            self.rejects.add(file, line, reason, raw, detail)
        self._held.clear()

    def _due(self) -> bool:
        """Time to flush: a batch of rows, or as many held rejects (memory stays bounded)."""
        return len(self.rows) >= self.settings.batch_rows or len(self._held) >= self.settings.batch_rows

    def close(self) -> PartResult:
        """Finish the part file; what pass 2 needs to know about it."""
        release_scratch()
        return self.part.close()


def _line_of(reject: tuple[int, str, Any, str]) -> int:
    return reject[0]


def _is_utf8(data: bytes) -> bool:
    """Valid UTF-8 (orjson accepts exactly that; msgspec does not check skipped strings)."""
    if data.isascii():
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
