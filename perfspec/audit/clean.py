"""Raw audit logs -> ``events.parquet`` + ``rejects.jsonl`` + ``summary.json`` (``perfspec clean``).

Two passes. Pass 1 (``pass1.PartReader``) streams each file into Arrow IPC "parts" in log order, leaving
per row only a 64-bit audit-ID hash and a stage rank; a large uncompressed JSON-lines file is cut at
line boundaries into ranges that this process and forked helper processes (``worker.py``) parse in
parallel. Then one sort of the hashes picks, for each request logged at several stages, the row of its
latest stage; pass 2 writes the kept rows of the parts, in order, into the final Parquet file (row
groups of ``batch_rows`` rows, whatever the split), the only Parquet encoding of the run, its two
halves in two processes. Outputs appear atomically and ``summary.json`` last: its presence marks a
finished run, so a crashed run is simply run again.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import itertools
import json
import os
import queue
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from perfspec.audit.parquet_append import append_row_groups
from perfspec.audit.parts import PARQUET_OPTIONS, PartResult
from perfspec.audit.pass1 import FileCounts, PartReader
from perfspec.audit.rejects import RejectWriter
from perfspec.audit.schema import EVENTS_SCHEMA
from perfspec.audit.sources import (
    OUTPUT_FILES,
    OpenedSource,
    expand_sources,
    is_compressed,
    line_start_after,
    open_source,
)
from perfspec.audit.worker import CAN_FORK, EXIT_WRITE_FAILED, Helper, run_claimed, writing_exit_code
from perfspec.audit.worker import run as run_job
from perfspec.errors import EnvironmentProblem, InputError
from perfspec.fileio import atomic_open, atomic_path, ensure_writable_dir, write_json_atomic
from perfspec.settings import CleanSettings

__all__ = ["CleanSummary", "FileCounts", "clean_sources"]

EVENTS_FILE, REJECTS_FILE, SUMMARY_FILE = OUTPUT_FILES  # named in sources, which never reads them back


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
    sources: Sequence[Path],
    out_dir: Path,
    settings: CleanSettings,
    progress: bool = False,
    executor: Executor | None = None,
) -> CleanSummary:
    """Clean audit logs into ``out_dir/{events.parquet, rejects.jsonl, summary.json}``.

    ``sources`` are files or directories (read in the order given; a directory's files sorted by
    path, clean's own outputs left out; files in a directory that are not audit logs are skipped and
    listed). Raises ``InputError`` when there is nothing to clean (empty input, not an audit log,
    every record rejected, unreadable compression); nothing is written then. Raises
    ``EnvironmentProblem`` when ``out_dir`` cannot be written (checked before reading; a full disk
    midway too). A compressed file that breaks midway keeps the rows read before the break and is
    listed in ``incomplete_files``.

    ``executor`` (e.g. a Dask cluster's, ``perfspec.scaleout``): pass 1 of every file (and of every byte
    range of a large JSON-lines file) runs there, all files at once; pass 2 runs here. The outputs are
    the same bytes as without it. ``out_dir`` must then be on storage the executor's workers share.
    """
    out_dir = Path(out_dir)
    files = expand_sources(sources, out_dir)
    _prepare_out_dir(out_dir)
    settings = resolve_parts_compression(settings, files, out_dir)
    summary = CleanSummary()
    gc_was_enabled = gc.isenabled()
    gc.disable()  # millions of short-lived tuples, no cycles: the cyclic GC only costs time here
    try:
        with (
            atomic_path(out_dir / EVENTS_FILE) as events_tmp,
            atomic_open(out_dir / REJECTS_FILE) as rejects_handle,
            tempfile.TemporaryDirectory(prefix=".clean-", dir=out_dir) as work_dir,
            _progress_bar(progress, files) as advance,
        ):
            rejects = RejectWriter(rejects_handle, settings.reject_raw_max_chars)
            if executor is None:
                parts = _pass_one(files, Path(work_dir), settings, rejects, summary, advance)
            else:
                parts = _pass_one_on(executor, files, Path(work_dir), settings, rejects, summary, advance)
            _check_something_to_write(summary, parts, rejects, sources)
            # From here on the outputs get replaced: no summary = no finished run. A re-run that fails
            # before this point (bad input) leaves the previous, complete output untouched.
            with contextlib.suppress(FileNotFoundError):
                (out_dir / SUMMARY_FILE).unlink()
            keep = _latest_stage_mask(parts, _workers(settings)) if settings.dedupe else None
            _pass_two(parts, events_tmp, keep, settings.batch_rows, _workers(settings), Path(work_dir))
            _fill_counts(summary, parts, keep, rejects)
        write_json_atomic(out_dir / SUMMARY_FILE, summary.to_dict())
    except OSError as exc:  # inputs that fail to read are handled per file: this is the output side
        raise _write_problem(out_dir, exc) from exc
    finally:
        if gc_was_enabled:
            gc.enable()
    return summary


def _prepare_out_dir(out_dir: Path) -> None:
    """Create ``out_dir`` and write a file there now, so an unwritable folder fails before the long work."""
    if out_dir.exists() and not out_dir.is_dir():
        raise EnvironmentProblem(
            f"the output folder {out_dir} is an existing file", hint="pass --out a folder (made if missing)"
        )
    try:
        ensure_writable_dir(out_dir)
    except OSError as exc:
        raise _write_problem(out_dir, exc) from exc


#: Uncompressed parts take about this share of the JSON they come from (1 GB of audit lines: 0.39 GB);
#: a compressed input file is counted as this many times its size (gzip on audit logs: 8-12x).
_PARTS_SHARE = 0.4
_COMPRESSED_EXPANSION = 12


def resolve_parts_compression(
    settings: CleanSettings, files: list[tuple[Path, bool]], out_dir: Path
) -> CleanSettings:
    """``settings`` with ``parts_compression`` "auto" decided: uncompressed parts when the output disk
    has room for twice what they are expected to take (the faster way), LZ4 (~3x smaller) otherwise."""
    if settings.parts_compression != "auto":
        return settings
    expected = 0.0
    for path, _ in files:
        with contextlib.suppress(OSError):
            expansion = _COMPRESSED_EXPANSION if is_compressed(path) else 1
            expected += path.stat().st_size * expansion * _PARTS_SHARE
    try:
        free = shutil.disk_usage(out_dir).free
    except OSError:
        free = 0
    return settings.model_copy(update={"parts_compression": "none" if free >= 2 * expected else "lz4"})


def _write_problem(out_dir: Path, exc: OSError | str) -> EnvironmentProblem:
    """An error while writing the outputs as one line: what failed, where, and what to do."""
    reason = exc if isinstance(exc, str) else exc.strerror or str(exc)
    where = getattr(exc, "filename", None)
    full = getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or "No space left" in str(exc)
    return EnvironmentProblem(
        f"cannot write the outputs to {out_dir}: {reason}"
        + (f" ({where})" if where and str(where) != str(out_dir) else ""),
        hint="free some space there, or pass --out a folder on another disk"
        if full
        else "pass --out a folder you can write to",
    )


def _pass_one(
    files: list[tuple[Path, bool]],
    work_dir: Path,
    settings: CleanSettings,
    rejects: RejectWriter,
    summary: CleanSummary,
    advance: Any,
) -> list[PartResult]:
    """Every file into parts, in order; consecutive files read in-process share one part."""
    parts: list[PartResult] = []
    collector: PartReader | None = None
    for path, explicit in files:
        source = _open_or_skip(path, explicit, summary)
        if source is None:
            continue
        with source:
            source.on_progress(advance)
            ranges = _parallel_ranges(source, settings)
            if ranges:
                if collector is not None:
                    parts.append(collector.close())
                    collector = None
                counts, file_parts = _clean_in_workers(source, ranges, work_dir, settings, rejects)
                parts.extend(file_parts)
                if advance is not None:
                    advance(source.size)
            else:
                if collector is None:
                    collector = PartReader(work_dir / f"part-{len(parts):04d}.arrow", settings, rejects)
                counts = collector.read_source(source)
        summary.files.append(counts)
    if collector is not None:
        parts.append(collector.close())
    return parts


def _open_or_skip(path: Path, explicit: bool, summary: CleanSummary) -> OpenedSource | None:
    """The opened file; a file found in a folder that is not an audit log is listed as skipped (None),
    a file named explicitly raises."""
    try:
        return open_source(path)
    except InputError as error:
        if explicit:
            raise
        reason = str(error).split("\n")[0].removeprefix(f"{path}: ")
        summary.skipped_files.append({"file": str(path), "reason": reason})
        return None


def _pass_one_on(
    executor: Executor,
    files: list[tuple[Path, bool]],
    work_dir: Path,
    settings: CleanSettings,
    rejects: RejectWriter,
    summary: CleanSummary,
    advance: Any,
) -> list[PartResult]:
    """Pass 1 as jobs on ``executor``: a whole file each, or the byte ranges of a large JSON-lines file;
    all submitted first, then stitched in file order (the same parts, rejects and counts)."""
    planned: list[tuple[OpenedSource, list[tuple[Future[None], Path]], bool]] = []
    for path, explicit in files:
        source = _open_or_skip(path, explicit, summary)
        if source is None:
            continue
        with source:
            ranges = _parallel_ranges(source, settings)
            jobs = []
            for start, end in ranges or [(0, source.size)]:
                job_dir = Path(tempfile.mkdtemp(prefix=f"job{len(planned)}-", dir=work_dir))
                request = _request(source, job_dir, settings, start, end) | {"whole": not ranges}
                jobs.append((executor.submit(run_job, request), job_dir))
            planned.append((source, jobs, bool(ranges)))
    parts: list[PartResult] = []
    for source, jobs, ranged in planned:
        for future, _ in jobs:
            try:
                future.result()
            except OSError as error:
                raise _write_problem(work_dir.parent, error) from error
            except Exception as error:  # a worker's failure, as the executor reports it
                raise EnvironmentProblem(
                    f"{source.display}: a cleaning job failed ({type(error).__name__}: {error})",
                    hint="re-run without the Dask runner (PERFSPEC_PREFECT__TASK_RUNNER=sequential)",
                ) from error
        counts, file_parts = _collect_jobs(source, [d for _, d in jobs], rejects)
        if not ranged:  # a whole file: the worker counted it as the in-process reader does
            result = json.loads((jobs[0][1] / "result.json").read_text())
            counts = FileCounts(**result["counts"])
            file_parts[0].file_rows = list(result["file_rows"])
        parts.extend(file_parts)
        summary.files.append(counts)
        if advance is not None:
            advance(source.size)
    return parts


def _request(
    source: OpenedSource, job_dir: Path, settings: CleanSettings, start: int, end: int
) -> dict[str, Any]:
    return {
        "path": str(source.path),
        "display": source.display,
        "start": start,
        "end": end,
        "settings": settings.model_dump(mode="json"),
        "out_dir": str(job_dir),
    }


#: A large file is cut into byte ranges of about this size, claimed one at a time by this process and the
#: worker processes (work sharing: a worker that starts late or runs on a busy core simply does fewer).
JOB_BYTES = 64 * 1024 * 1024


def _workers(settings: CleanSettings) -> int:
    """Processes cleaning one file's ranges, this one included (``workers`` 0: one per CPU)."""
    return settings.workers or os.cpu_count() or 1


def _parallel_ranges(source: OpenedSource, settings: CleanSettings) -> list[tuple[int, int]]:
    """Byte ranges, split at line starts, for worker processes; [] to read the file in-process."""
    workers = _workers(settings)
    if workers < 2 or source.compression != "none" or source.format != "jsonl":
        return []
    if source.size < settings.parallel_min_bytes:
        return []
    count = max(workers, -(-source.size // JOB_BYTES))
    bounds = [0]
    for i in range(1, count):
        start = line_start_after(source.path, source.size * i // count, source.size)
        if start is None:
            break
        if start > bounds[-1]:
            bounds.append(start)
    bounds.append(source.size)
    return list(itertools.pairwise(bounds)) if len(bounds) > 2 else []


def _clean_in_workers(
    source: OpenedSource,
    ranges: list[tuple[int, int]],
    work_dir: Path,
    settings: CleanSettings,
    rejects: RejectWriter,
) -> tuple[FileCounts, list[PartResult]]:
    """Pass 1 of one file's byte ranges by this process and ``workers - 1`` worker subprocesses, each
    claiming the next unclaimed range (``worker.run_claimed``), then stitched in range order."""
    job_dirs = [
        Path(tempfile.mkdtemp(prefix=f"range{index:04d}-", dir=work_dir)) for index in range(len(ranges))
    ]
    claims = Path(tempfile.mkdtemp(prefix="claims-", dir=work_dir))
    payload = {
        "jobs": [
            _request(source, job_dir, settings, *bounds)
            for job_dir, bounds in zip(job_dirs, ranges, strict=True)
        ],
        "claims": str(claims),
    }
    helpers: list[Helper] = []
    mine: BaseException | None = None
    try:
        for _ in range(min(_workers(settings), len(ranges)) - 1):
            helpers.append(_started(lambda: Helper.cleaning(payload)))
        run_claimed(payload)
    except BaseException as error:  # every worker must end before the folder is removed
        mine = error
        for helper in helpers:
            helper.kill()
    ended = [_failure(*helper.finish()) for helper in helpers]  # every helper ends before the raise
    if mine is not None:
        raise mine
    failures = [failure for failure in ended if failure is not None]
    for disk_full, _ in failures:  # none writes into the folder about to be removed any more
        if disk_full is not None:
            raise _write_problem(work_dir.parent, disk_full)
    unfinished = [d for d in job_dirs if not (d / "result.json").exists()]
    if failures or unfinished:
        detail = failures[0][1] if failures else f"{len(unfinished)} byte ranges were left unfinished"
        raise EnvironmentProblem(
            f"{source.display}: a parallel cleaning worker failed ({detail})",
            hint="re-run with --workers 1 to clean in one process",
        )
    return _collect_jobs(source, job_dirs, rejects)


def _failure(code: int, err: bytes) -> tuple[str | None, str] | None:
    """How a helper ended, from its exit status and stderr: None when it succeeded; else (the reason of
    a write that failed (a full disk) or None, the failure in words: ``killed by SIGKILL`` rather than
    ``exit -9``, then its last lines)."""
    if code == 0:
        return None
    tail = err.decode(errors="replace").strip().splitlines()[-3:]
    disk_full = tail[-1].removeprefix("error: ") if code == EXIT_WRITE_FAILED and tail else None
    reason = f"exit {code}"
    if code < 0:
        with contextlib.suppress(ValueError):
            reason = f"killed by {signal.Signals(-code).name}"
    return disk_full, reason + (f": {' | '.join(tail)}" if tail else "")


def _collect_jobs(
    source: OpenedSource, job_dirs: list[Path], rejects: RejectWriter
) -> tuple[FileCounts, list[PartResult]]:
    """The finished jobs of one file, in order: its parts, its rejects (line numbers made absolute)."""
    counts = FileCounts(source.display, source.format, source.compression)
    parts: list[PartResult] = []
    line_offset = 0
    for job_dir in job_dirs:
        result = json.loads((job_dir / "result.json").read_text())
        parts.append(
            PartResult(
                path=job_dir / "part.arrow" if result["rows"] else None,
                rows=result["rows"],
                hashes=np.load(job_dir / "hashes.npy"),
                ranks=np.load(job_dir / "ranks.npy"),
                min_ts_us=result["min_ts_us"],
                max_ts_us=result["max_ts_us"],
                line_offset=line_offset,
            )
        )
        with open(job_dir / "rejects.jsonl", "rb") as handle:
            for line in handle:
                record = orjson.loads(line)
                record["line"] += line_offset
                rejects.append_record(record)
        counts.read += result["read"]
        counts.rejected += result["rejected"]
        line_offset += result["lines"]
    parts[0].file_rows = [sum(p.rows for p in parts)]  # one entry per file, on the file's first part
    return counts, parts


#: The mask is computed one hash bucket at a time (by the hash's top bits): sort temporaries stay
#: 1/16 of the rows, so peak memory grows ~11 bytes per row (hash, rank, mask), not ~50.
_MASK_BUCKET_BITS = 4


def _latest_stage_mask(parts: list[PartResult], threads: int = 2) -> np.ndarray:
    """True for the row to keep of each request: its latest stage, the first such record on ties.

    Buckets are independent (equal hashes share one) and numpy sorts without the GIL: ``threads``
    threads sort them side by side."""
    hashes = np.concatenate([p.hashes for p in parts]) if parts else np.empty(0, np.uint64)
    ranks = np.concatenate([p.ranks for p in parts]) if parts else np.empty(0, np.int8)
    for part in parts:
        part.hashes = part.ranks = np.empty(0)
    keep = np.zeros(len(hashes), dtype=bool)
    buckets = (hashes >> np.uint64(64 - _MASK_BUCKET_BITS)).astype(np.uint8)

    def mark(bucket: int) -> None:  # each bucket writes only its own rows of ``keep``
        rows = np.flatnonzero(buckets == bucket)
        if len(rows) == 0:
            return
        bucket_hashes = hashes[rows]
        order = np.lexsort((rows, -ranks[rows].astype(np.int16), bucket_hashes))
        sorted_hashes = bucket_hashes[order]
        first = np.ones(len(order), dtype=bool)
        first[1:] = sorted_hashes[1:] != sorted_hashes[:-1]
        keep[rows[order[first]]] = True

    with ThreadPoolExecutor(max(1, threads), thread_name_prefix="clean-mask") as pool:
        list(pool.map(mark, range(1 << _MASK_BUCKET_BITS)))
    return keep


def _pass_two(
    parts: list[PartResult],
    target: Path,
    keep: np.ndarray | None,
    group_rows: int,
    workers: int,
    work_dir: Path,
) -> None:
    """The final ``events.parquet``: the kept rows of every part, in order, line numbers made absolute.

    Row groups hold ``group_rows`` rows each (the last one fewer) however pass 1 was split, so the
    file is the same bytes with any number of workers. With two workers or more (and fork), a helper
    process encodes the second half of the row groups into a file of its own while this one encodes
    the first half into ``target``; its row groups are then appended (``parquet_append``): the same
    bytes as one writer, a little sooner (0.77 -> 0.65 s at 1 GB: one process already kept ~1.5 cores busy).
    """
    kept = int(keep.sum()) if keep is not None else sum(p.rows for p in parts)
    groups = -(-kept // group_rows)
    if workers < 2 or groups < 2 or not CAN_FORK:
        _write_row_groups(parts, target, keep, group_rows, 0, kept)
        return
    middle = groups // 2 * group_rows
    second = work_dir / "second-half.parquet"

    def write_second_half() -> int:  # in the forked helper
        return writing_exit_code(lambda: _write_row_groups(parts, second, keep, group_rows, middle, kept))

    helper = _started(lambda: Helper(write_second_half))
    try:
        _write_row_groups(parts, target, keep, group_rows, 0, middle)
    except BaseException:
        helper.kill()
        helper.finish()
        raise
    failure = _failure(*helper.finish())
    if failure is not None:
        disk_full, detail = failure
        if disk_full is not None:
            raise _write_problem(work_dir.parent, disk_full)
        raise EnvironmentProblem(
            f"writing {EVENTS_FILE}: a helper process failed ({detail})",
            hint="re-run with --workers 1 to clean in one process",
        )
    try:
        append_row_groups(target, second)
    except (ValueError, FileNotFoundError) as error:  # the helper ended without writing its whole file
        raise EnvironmentProblem(
            f"writing {EVENTS_FILE}: a helper process left an incomplete file ({error})",
            hint="re-run with --workers 1 to clean in one process",
        ) from error
    second.unlink()


def _started(start: Callable[[], Helper]) -> Helper:
    """``start()``; a helper that cannot be started (no memory, no process slots) is an environment
    problem with its own hint, not a disk one."""
    try:
        return start()
    except OSError as error:
        raise EnvironmentProblem(
            f"cannot start a helper process: {error.strerror or error}",
            hint="re-run with --workers 1 to clean in one process",
        ) from error


def _write_row_groups(
    parts: list[PartResult], target: Path, keep: np.ndarray | None, group_rows: int, start: int, stop: int
) -> None:
    """Kept rows ``start`` to ``stop`` (counted in log order) as a Parquet file of ``group_rows``-row
    groups. A thread reads, filters and assembles the row groups while this one encodes Parquet (both
    release the GIL): the two halves of the work overlap."""
    groups: queue.Queue[pa.Table | BaseException | None] = queue.Queue(maxsize=4)
    stop_event = threading.Event()

    def put(item: pa.Table | BaseException | None) -> None:
        while not stop_event.is_set():
            with contextlib.suppress(queue.Full):
                groups.put(item, timeout=0.1)
                return

    def assemble() -> None:
        try:
            for group in _row_groups(parts, keep, group_rows, start, stop):
                put(group)
                if stop_event.is_set():
                    return
            put(None)
        except BaseException as error:
            put(error)

    reader = threading.Thread(target=assemble, name="clean-pass-two", daemon=True)
    reader.start()
    try:
        with pq.ParquetWriter(target, EVENTS_SCHEMA, **PARQUET_OPTIONS) as writer:
            while (group := groups.get()) is not None:
                if isinstance(group, BaseException):
                    raise group
                writer.write_table(group, row_group_size=group_rows)
    finally:
        stop_event.set()
        reader.join()


def _row_groups(
    parts: list[PartResult], keep: np.ndarray | None, group_rows: int, start: int, stop: int
) -> Iterator[pa.Table]:
    """Kept rows ``start`` to ``stop`` of the parts, in order, as tables of exactly ``group_rows`` rows
    (the last fewer), each one contiguous chunk (the Parquet encoder then sees the same input however
    pass 1 was split). Parts wholly before ``start`` are not read."""
    pending: list[pa.Table] = []
    buffered = 0
    offset = 0  # rows of the parts so far (the index into ``keep``)
    seen = 0  # kept rows so far
    for part in parts:
        if seen >= stop:
            break
        part_kept = int(keep[offset : offset + part.rows].sum()) if keep is not None else part.rows
        if part.path is None or seen + part_kept <= start:
            offset += part.rows
            seen += part_kept
            continue
        with pa.OSFile(str(part.path)) as handle, pa.ipc.open_file(handle) as reader:
            for index in range(reader.num_record_batches):
                if seen >= stop:
                    break
                table = pa.Table.from_batches([reader.get_batch(index)])
                rows = table.num_rows
                if keep is not None:
                    mask = keep[offset : offset + rows]
                    if not mask.all():
                        table = table.filter(pa.array(mask))
                offset += rows
                first, last = max(start - seen, 0), min(stop - seen, table.num_rows)
                seen += table.num_rows
                if first >= last:
                    continue
                if first or last < table.num_rows:
                    table = table.slice(first, last - first)
                if part.line_offset:
                    columns = table.columns
                    columns[-1] = pc.add(columns[-1], pa.scalar(part.line_offset, pa.int64()))
                    table = pa.Table.from_arrays(columns, schema=EVENTS_SCHEMA)
                pending.append(table)
                buffered += table.num_rows
                if buffered >= group_rows:
                    whole = pa.concat_tables(pending).combine_chunks()
                    pending.clear()
                    cut = buffered // group_rows * group_rows
                    for begin in range(0, cut, group_rows):
                        yield whole.slice(begin, group_rows)
                    if cut < buffered:
                        pending.append(whole.slice(cut))
                    buffered -= cut
    if buffered:
        yield pa.concat_tables(pending).combine_chunks()


def _check_something_to_write(
    summary: CleanSummary, parts: list[PartResult], rejects: RejectWriter, sources: Sequence[Path]
) -> None:
    if sum(p.rows for p in parts):
        return
    names = ", ".join(str(s) for s in sources)
    read = sum(f.read for f in summary.files)
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
    summary: CleanSummary, parts: list[PartResult], keep: np.ndarray | None, rejects: RejectWriter
) -> None:
    """Per-file kept/duplicates from the mask; totals; reject reasons; the time range."""
    rows_per_file: list[int] = []
    for part in parts:
        rows_per_file.extend(part.file_rows)
    offset = 0
    for counts, rows in zip(summary.files, rows_per_file, strict=True):
        kept = int(keep[offset : offset + rows].sum()) if keep is not None else rows
        offset += rows
        counts.kept = kept
        counts.duplicates = rows - kept
    summary.read = sum(f.read for f in summary.files)
    summary.kept = sum(f.kept for f in summary.files)
    summary.duplicates = sum(f.duplicates for f in summary.files)
    summary.rejected = rejects.count
    summary.reject_reasons = dict(sorted(rejects.reasons.items()))
    lows = [p.min_ts_us for p in parts if p.min_ts_us is not None]
    highs = [p.max_ts_us for p in parts if p.max_ts_us is not None]
    if lows:
        summary.first_request_at = _iso(min(lows))
        summary.last_request_at = _iso(max(highs))


def _iso(micros: int) -> str:
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)).isoformat()


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
