"""Raw audit logs -> ``events.parquet`` + ``rejects.jsonl`` + ``summary.json`` (``perfspec clean``).

How it stays fast and flat in memory: lines are read in 4 MiB blocks, each parsed once with orjson,
and only the metadata fields are kept as one tuple per event; every ``batch_rows`` events become an
Arrow record batch (timestamps parsed by Arrow, vectorised) written as a Parquet row group. Requests
the API server logged at several stages are merged afterwards: each row leaves only a 64-bit hash of
its audit ID and its stage rank in two numpy arrays (9 bytes a row), the latest stage of each request
is chosen with one sort, and a second pass over the Parquet drops the others (skipped when there is
nothing to drop). Outputs appear atomically, and ``summary.json`` last: its presence marks a finished
run, so a crashed run is simply run again.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

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
    TIMESTAMP_COLUMNS,
)
from perfspec.audit.sources import (
    STREAM_ERRORS,
    LineTooLong,
    OpenedSource,
    StreamBroken,
    expand_sources,
    open_source,
)
from perfspec.errors import InputError
from perfspec.fileio import atomic_open, atomic_path, write_json_atomic
from perfspec.settings import CleanSettings

EVENTS_FILE = "events.parquet"
REJECTS_FILE = "rejects.jsonl"
SUMMARY_FILE = "summary.json"
PARQUET_OPTIONS: dict[str, Any] = {"compression": "zstd", "use_dictionary": True, "write_statistics": True}

_STRING_TYPES = {f.name: f.type for f in EVENTS_SCHEMA}
_STAGES = pa.array(list(STAGE_RANK))
# Fixed odd 64-bit multipliers: the audit-ID hash is the same in every run and on every machine.
_HASH_WEIGHTS = np.random.default_rng(0x9E3779B9).integers(
    1, 2**63, size=MAX_AUDIT_ID_CHARS // 2 + 1, dtype=np.uint64
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
class CleanSummary:
    """Counts of a cleaning run; ``summary.json`` is ``to_dict()``."""

    read: int = 0
    kept: int = 0
    duplicates: int = 0
    rejected: int = 0
    files: list[FileCounts] = field(default_factory=list)
    skipped_files: list[dict[str, str]] = field(default_factory=list)
    reject_reasons: dict[str, int] = field(default_factory=dict)
    first_request_at: str | None = None
    last_request_at: str | None = None

    @property
    def incomplete_files(self) -> list[FileCounts]:
        """Files whose (compressed) stream broke midway; the rows before the break were kept."""
        return [f for f in self.files if not f.complete]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["incomplete_files"] = [f.file for f in self.incomplete_files]
        return data


def clean_sources(
    sources: Sequence[Path], out_dir: Path, settings: CleanSettings, progress: bool = False
) -> CleanSummary:
    """Clean audit logs into ``out_dir/{events.parquet, rejects.jsonl, summary.json}``.

    ``sources`` are files or directories (read in the order given; a directory's files sorted by
    path). Raises ``InputError`` when there is nothing to clean (empty input, not an audit log,
    every record rejected, unreadable compression); nothing is written then. A compressed file that
    breaks midway keeps the rows read before the break and is listed in ``incomplete_files``.
    """
    out_dir = Path(out_dir)
    files = expand_sources(sources)
    out_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        (out_dir / SUMMARY_FILE).unlink()  # no summary = no finished run
    summary = CleanSummary()
    with (
        atomic_path(out_dir / EVENTS_FILE) as events_tmp,
        atomic_open(out_dir / REJECTS_FILE) as rejects_handle,
        _scratch_path(out_dir) as stage1_tmp,
        _progress_bar(progress, files) as advance,
    ):
        rejects = RejectWriter(rejects_handle, settings.reject_raw_max_chars)
        stage = _StageOne(stage1_tmp, settings, rejects)
        try:
            for path, explicit in files:
                try:
                    source = open_source(path, settings.max_line_bytes)
                except InputError as error:
                    if explicit:
                        raise
                    summary.skipped_files.append({"file": str(path), "reason": str(error).split("\n")[0]})
                    continue
                with source:
                    source.on_progress(advance)
                    summary.files.append(stage.read_source(source))
        finally:
            stage.close()
        _check_something_to_write(summary, stage, rejects, sources)
        keep = stage.latest_stage_mask() if settings.dedupe else None
        _write_events(stage1_tmp, events_tmp, keep, settings.batch_rows)
        _fill_counts(summary, stage, keep, rejects)
    write_json_atomic(out_dir / SUMMARY_FILE, summary.to_dict())
    return summary


class _StageOne:
    """Pass 1: every readable event into a Parquet file, in log order, plus hash and stage arrays."""

    def __init__(self, path: Path, settings: CleanSettings, rejects: RejectWriter) -> None:
        self.path = path
        self.settings = settings
        self.rejects = rejects
        self.writer: pq.ParquetWriter | None = None
        self.hashes: list[np.ndarray] = []
        self.ranks: list[np.ndarray] = []
        self.file_rows: list[int] = []  # valid rows per file, in file order
        self.rows: list[Row] = []
        self.lines: list[int] = []
        self.min_ts: Any = None
        self.max_ts: Any = None
        self.rejected_by_file: list[int] = []
        self._pending_read = 0

    # -- reading -------------------------------------------------------------------------------------
    def read_source(self, source: OpenedSource) -> FileCounts:
        counts = FileCounts(source.display, source.format, source.compression)
        self.file_rows.append(0)
        before = self.rejects.count
        reader = {
            "jsonl": self._read_jsonl,
            "json-document": self._read_documents,
            "logstash-csv": self._read_csv,
            "empty": lambda source, counts: None,
        }[source.format]
        try:
            reader(source, counts)
        except StreamBroken as broken:
            self._reject(source.display, broken.next_line, "truncated-stream", broken.tail, broken.detail)
            counts.read += 1
            counts.complete = False
            counts.error = broken.detail
        self._flush(source.display)
        counts.rejected = self.rejects.count - before
        self.rejected_by_file.append(counts.rejected)
        return counts

    def _reject(self, file: str, line: int, reason: str, raw: Any, detail: str) -> None:
        self.rejects.add(file, line, reason, raw, detail)

    def _add_value(self, value: Any, file: str, line_no: int) -> int:
        """Add one parsed JSON value (an Event, an EventList or an array); returns records read."""
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
        try:
            self._jsonl_blocks(source, counts)
        finally:
            counts.read += self._pending_read
            self._pending_read = 0

    def _jsonl_blocks(self, source: OpenedSource, counts: FileCounts) -> None:
        """The hot loop: one orjson parse and one tuple per event, nothing else per line."""
        loads = orjson.loads
        decode_error = orjson.JSONDecodeError
        max_line = self.settings.max_line_bytes
        file = source.display
        rows_append = self.rows.append
        lines_append = self.lines.append
        read = 0
        for block in source.line_blocks(max_line):
            if block.__class__ is LineTooLong:
                self._too_long(file, block)  # type: ignore[arg-type]
                self._pending_read += 1
                continue
            line_no, lines = block  # type: ignore[misc]
            line_no -= 1
            for line in lines:
                line_no += 1
                if not line:
                    continue
                if len(line) > max_line:
                    self._too_long(file, LineTooLong(line_no, line[:65_536], len(line)))
                    read += 1
                    continue
                try:
                    value = loads(line)
                except decode_error as exc:
                    if line.isspace():
                        continue
                    self._reject(file, line_no, "invalid-json", line, str(exc))
                    read += 1
                    continue
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
                rows_append = self.rows.append
                lines_append = self.lines.append

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
        for block in source.line_blocks(max_line):
            if block.__class__ is LineTooLong:
                self._too_long(file, block)  # type: ignore[arg-type]
                counts.read += 1
                continue
            line_no, lines = block  # type: ignore[misc]
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

    # -- writing -------------------------------------------------------------------------------------
    def _flush(self, file: str) -> None:
        """Turn the buffered rows into a record batch (a Parquet row group) and record hashes/ranks."""
        if not self.rows:
            return
        rows, lines = self.rows, self.lines
        try:
            arrays = _column_arrays(rows)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
            rows, lines = self._drop_bad_rows(file, rows, lines)
            arrays = _column_arrays(rows) if rows else None
        self.rows = []
        self.lines = []
        if arrays is None:
            return
        received = arrays[EVENT_COLUMNS.index("request_received_at")]
        missing = received.is_null()
        if missing.true_count:
            for index in np.flatnonzero(missing.to_numpy(zero_copy_only=False)):
                row = dict(zip(EVENT_COLUMNS, rows[index], strict=True))
                self._reject(file, lines[index], "missing-timestamp", row, "no requestReceivedTimestamp")
            keep_mask = pc.invert(missing)
            arrays = [a.filter(keep_mask) for a in arrays]
            lines = [line for line, bad in zip(lines, missing.to_pylist(), strict=True) if not bad]
            rows = [row for row, bad in zip(rows, missing.to_pylist(), strict=True) if not bad]
            if not lines:
                return
        count = len(lines)
        arrays.append(pa.array([file] * count, pa.string()))
        arrays.append(pa.array(lines, pa.int64()))
        batch = pa.RecordBatch.from_arrays(arrays, schema=EVENTS_SCHEMA)
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, EVENTS_SCHEMA, **PARQUET_OPTIONS)
        self.writer.write_table(pa.Table.from_batches([batch]), row_group_size=count)
        self.hashes.append(hash_audit_ids([row[0] for row in rows]))
        self.ranks.append(pc.index_in(batch.column(1), value_set=_STAGES).to_numpy().astype(np.int8))
        self.file_rows[-1] += count
        low, high = pc.min_max(received.filter(pc.invert(missing))).values()
        if low.is_valid:
            self.min_ts = low if self.min_ts is None or low.value < self.min_ts.value else self.min_ts
            self.max_ts = high if self.max_ts is None or high.value > self.max_ts.value else self.max_ts

    def _drop_bad_rows(self, file: str, rows: list[Row], lines: list[int]) -> tuple[list[Row], list[int]]:
        """Slow path, only for a batch Arrow refused: find the offending rows one by one, reject them."""
        good_rows: list[Row] = []
        good_lines: list[int] = []
        for row, line in zip(rows, lines, strict=True):
            problem = _row_problem(row)
            if problem is None:
                good_rows.append(row)
                good_lines.append(line)
            else:
                reason, detail = problem
                self._reject(file, line, reason, dict(zip(EVENT_COLUMNS, row, strict=True)), detail)
        return good_rows, good_lines

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    # -- merging stages ------------------------------------------------------------------------------
    @property
    def valid_rows(self) -> int:
        return sum(self.file_rows)

    def latest_stage_mask(self) -> np.ndarray:
        """True for the row to keep of each request: its latest stage, the first such record on ties."""
        hashes = np.concatenate(self.hashes) if self.hashes else np.empty(0, np.uint64)
        ranks = np.concatenate(self.ranks) if self.ranks else np.empty(0, np.int8)
        self.hashes, self.ranks = [], []
        order = np.lexsort((np.arange(len(hashes)), -ranks.astype(np.int16), hashes))
        sorted_hashes = hashes[order]
        first = np.ones(len(order), dtype=bool)
        first[1:] = sorted_hashes[1:] != sorted_hashes[:-1]
        keep = np.zeros(len(order), dtype=bool)
        keep[order[first]] = True
        return keep


def _column_arrays(rows: list[Row]) -> list[pa.Array]:
    """Arrow arrays for the event columns; raises if any value has the wrong type or timestamp format."""
    columns = list(zip(*rows, strict=True))
    arrays: list[pa.Array] = []
    for name, values in zip(EVENT_COLUMNS, columns, strict=True):
        if name in TIMESTAMP_COLUMNS:
            arrays.append(_timestamps(pa.array(values, pa.string())))
        else:
            arrays.append(pa.array(values, _STRING_TYPES[name]))
    return arrays


def _timestamps(strings: pa.Array) -> pa.Array:
    """RFC 3339 strings -> timestamp[us, UTC]; nanosecond fractions (older API servers) are truncated."""
    try:
        return strings.cast(pa.timestamp("us", tz="UTC"))
    except pa.ArrowInvalid:
        return strings.cast(pa.timestamp("ns", tz="UTC")).cast(pa.timestamp("us", tz="UTC"), safe=False)


def _row_problem(row: Row) -> tuple[str, str] | None:
    for name, value in zip(EVENT_COLUMNS, row, strict=True):
        if value is None:
            continue
        try:
            if name in TIMESTAMP_COLUMNS:
                _timestamps(pa.array([value], pa.string()))
            else:
                pa.array([value], _STRING_TYPES[name])
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
            return ("bad-field", f"{name}={value!r:.80} is not a valid {_STRING_TYPES[name]}")
    return None


def hash_audit_ids(ids: Sequence[str]) -> np.ndarray:
    """64-bit hashes of audit IDs, vectorised: a fixed random linear form over UTF-32 code units
    (two per 64-bit word), mixed with the length and finalised with splitmix64. Equal IDs always get
    equal hashes; two distinct IDs collide with probability about 2**-64."""
    chars = np.asarray(ids, dtype=np.str_)
    count = chars.shape[0]
    width = chars.dtype.itemsize // 4
    codes = chars.view(np.uint32).reshape(count, width)
    if width % 2:
        codes = np.concatenate([codes, np.zeros((count, 1), np.uint32)], axis=1)
    words = np.ascontiguousarray(codes).view(np.uint64)
    hashed = words @ _HASH_WEIGHTS[: words.shape[1]]
    hashed ^= np.char.str_len(chars).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    hashed ^= hashed >> np.uint64(30)
    hashed *= np.uint64(0xBF58476D1CE4E5B9)
    hashed ^= hashed >> np.uint64(27)
    hashed *= np.uint64(0x94D049BB133111EB)
    hashed ^= hashed >> np.uint64(31)
    return hashed


def _write_events(stage1: Path, target: Path, keep: np.ndarray | None, batch_rows: int) -> None:
    """Final ``events.parquet``: stage 1 itself when nothing is dropped, else its kept rows."""
    if keep is None or keep.all():
        os.replace(stage1, target)
        return
    parquet = pq.ParquetFile(stage1)
    offset = 0
    with pq.ParquetWriter(target, EVENTS_SCHEMA, **PARQUET_OPTIONS) as writer:
        for group in range(parquet.num_row_groups):
            table = parquet.read_row_group(group)
            mask = keep[offset : offset + table.num_rows]
            offset += table.num_rows
            kept = table.filter(pa.array(mask))
            if kept.num_rows:
                writer.write_table(kept, row_group_size=max(kept.num_rows, 1))
    parquet.close()


def _check_something_to_write(
    summary: CleanSummary, stage: _StageOne, rejects: RejectWriter, sources: Sequence[Path]
) -> None:
    names = ", ".join(str(s) for s in sources)
    read = sum(f.read for f in summary.files)
    if stage.valid_rows:
        return
    broken = [f for f in summary.files if not f.complete]
    if broken and read == len(broken):
        raise InputError(
            f"{broken[0].file}: {broken[0].error}; no event could be read before the break",
            hint="the file is corrupt or truncated; copy it again from its source",
        )
    if read == 0:
        n_skipped = len(summary.skipped_files)
        skipped = f" ({n_skipped} files skipped: not audit logs)" if n_skipped else ""
        raise InputError(
            f"no audit events in {names}: the input is empty{skipped}",
            hint="check that the audit backend writes to these files, or pass other files",
        )
    first = rejects.first
    where = f"first: {first['file']} line {first['line']}: {first['detail']}" if first else ""
    raise InputError(
        f"no audit events in {names}: all {read} records were rejected ({where})",
        hint="expected Kubernetes audit Events (audit.k8s.io/v1 or v1beta1) or the Logstash CSV",
    )


def _fill_counts(
    summary: CleanSummary, stage: _StageOne, keep: np.ndarray | None, rejects: RejectWriter
) -> None:
    offset = 0
    for counts, rows in zip(summary.files, stage.file_rows, strict=True):
        kept = int(keep[offset : offset + rows].sum()) if keep is not None else rows
        offset += rows
        counts.kept = kept
        counts.duplicates = rows - kept
    summary.read = sum(f.read for f in summary.files)
    summary.kept = sum(f.kept for f in summary.files)
    summary.duplicates = sum(f.duplicates for f in summary.files)
    summary.rejected = rejects.count
    summary.reject_reasons = dict(sorted(rejects.reasons.items()))
    if stage.min_ts is not None:
        summary.first_request_at = stage.min_ts.as_py().isoformat()
        summary.last_request_at = stage.max_ts.as_py().isoformat()


@contextlib.contextmanager
def _scratch_path(directory: Path) -> Iterator[Path]:
    """A temp file next to the outputs (same disk), always removed at the end."""
    fd, name = tempfile.mkstemp(prefix=".events.stage1.", suffix=".parquet", dir=directory)
    os.close(fd)
    try:
        yield Path(name)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(name)


@contextlib.contextmanager
def _progress_bar(enabled: bool, files: list[tuple[Path, bool]]) -> Iterator[Any]:
    """A rich progress bar over input bytes (compressed bytes for compressed files), or a no-op."""
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

    total = sum(path.stat().st_size for path, _ in files)
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        transient=True,
    ) as bar:
        task = bar.add_task("cleaning", total=total)
        yield lambda n: bar.advance(task, n)
