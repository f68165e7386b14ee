"""Opening audit-log files: which files, which compression, which format, and their lines in blocks.

Why sniff bytes instead of trusting names: logs are renamed, rotated and re-compressed by every tool on
their way from an API server to here. Why blocks: reading 4 MiB at a time and splitting on ``\\n`` is
what keeps the cleaner fast and its memory flat whatever the file size; a line longer than
``max_line_bytes`` is never held whole (only its first bytes are kept for the reject record).
"""

from __future__ import annotations

import bz2
import codecs
import csv
import gzip
import io
import lzma
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal

import orjson

from perfspec.errors import InputError

Format = Literal["jsonl", "json-document", "logstash-csv", "empty"]
Compression = Literal["none", "gzip", "xz", "bz2"]

BLOCK_BYTES = 4 * 1024 * 1024
SNIFF_BYTES = 64 * 1024
CSV_COLUMNS = 15

_MAGIC: tuple[tuple[bytes, Compression], ...] = (
    (b"\x1f\x8b", "gzip"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"BZh", "bz2"),
)
_UNSUPPORTED_MAGIC = {b"\x28\xb5\x2f\xfd": "zstd", b"PK\x03\x04": "zip", b"7z\xbc\xaf": "7z"}
#: Names skipped when a directory is expanded (campaign manifests live next to the logs).
# Files a directory may hold beside its audit logs: docs, and what `perfspec collect`/`receive`/`tail-audit`
# write next to the raw events in raw/<campaign>/ (manifest, labels, receiver rejects, tailer state).
_SKIP_NAMES = {
    "manifest.json",
    "labels.jsonl",
    "receiver-rejects.jsonl",
    "tail-state.json",
    "readme.md",
    "readme.txt",
    "license",
    "license.txt",
}

#: What a broken compressed stream raises while being read.
STREAM_ERRORS: tuple[type[BaseException], ...] = (EOFError, OSError, lzma.LZMAError, zlib.error)


@dataclass(frozen=True)
class LineTooLong:
    """Stands for a line longer than the limit: its first bytes and its full length."""

    line_no: int
    prefix: bytes
    length: int


class StreamBroken(Exception):
    """The (compressed) stream failed after ``next_line`` - 1 complete lines; ``tail`` is the partial line."""

    def __init__(self, next_line: int, tail: bytes, detail: str) -> None:
        super().__init__(detail)
        self.next_line = next_line
        self.tail = tail
        self.detail = detail


@dataclass
class OpenedSource:
    """One input file, opened and sniffed; iterate ``line_blocks()`` or ``byte_blocks()`` once."""

    path: Path
    display: str
    compression: Compression
    format: Format
    size: int
    _raw: BinaryIO
    _stream: BinaryIO
    _head: bytes
    _pending_error: BaseException | None = None
    _progress: Callable[[int], None] | None = field(default=None, repr=False)
    _reported: int = 0

    def close(self) -> None:
        try:
            if self._stream is not self._raw:
                self._stream.close()
        finally:
            self._raw.close()

    def __enter__(self) -> OpenedSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def on_progress(self, callback: Callable[[int], None] | None) -> None:
        """``callback(n)`` gets the number of raw (compressed) bytes consumed since its last call."""
        self._progress = callback

    def _report(self) -> None:
        if self._progress is None:
            return
        try:
            position = self._raw.tell()
        except (OSError, ValueError):
            return
        if position > self._reported:
            self._progress(position - self._reported)
            self._reported = position

    def byte_blocks(self) -> Iterator[bytes]:
        """Decompressed content in blocks; a broken stream raises after every readable byte is given."""
        if self._head:
            yield self._head
            self._head = b""
        if self._pending_error is not None:
            raise self._pending_error
        while True:
            block, error = _read_up_to(self._stream, BLOCK_BYTES)
            self._report()
            if block:
                yield block
            if error is not None:
                raise error
            if not block:
                return

    def line_blocks(self, max_line_bytes: int) -> Iterator[tuple[int, list[bytes]] | LineTooLong]:
        """Lines of the whole file in blocks; see ``split_lines``."""
        return split_lines(self.byte_blocks(), max_line_bytes, self._describe)

    def _describe(self, exc: BaseException) -> str:
        return _describe_stream_error(self, exc)


def range_blocks(path: Path, start: int, end: int) -> Iterator[bytes]:
    """Blocks of the byte range ``[start, end)`` of an uncompressed file (for parallel workers)."""
    with open(path, "rb", buffering=0) as handle:
        handle.seek(start)
        left = end - start
        while left > 0:
            block = handle.read(min(BLOCK_BYTES, left))
            if not block:
                return
            left -= len(block)
            yield block


def split_lines(
    blocks: Iterator[bytes], max_line_bytes: int, describe: Callable[[BaseException], str] = str
) -> Iterator[tuple[int, list[bytes]] | LineTooLong]:
    """Yield ``(number of the first line, lines)`` blocks and ``LineTooLong`` markers, in order.

    Lines exclude their ``\\n``; blank lines are included (numbering stays right). A final line
    without a newline is included. Raises ``StreamBroken`` if decompression fails midway.
    """
    carry = b""
    line_no = 1
    skipping: LineTooLong | None = None
    while True:
        try:
            block = next(blocks)
        except StopIteration:
            break
        except STREAM_ERRORS as exc:
            if skipping is not None:
                yield skipping
                line_no += 1
                carry = b""
            raise StreamBroken(line_no, carry, describe(exc)) from exc
        if skipping is not None:
            newline = block.find(b"\n")
            if newline < 0:
                skipping = LineTooLong(skipping.line_no, skipping.prefix, skipping.length + len(block))
                continue
            yield LineTooLong(skipping.line_no, skipping.prefix, skipping.length + newline)
            skipping = None
            line_no += 1
            block = block[newline + 1 :]
        data = carry + block if carry else block
        lines = data.split(b"\n")
        carry = lines.pop()
        if len(data) > max_line_bytes and any(len(line) > max_line_bytes for line in lines):
            yield from _with_markers(line_no, lines, max_line_bytes)
            line_no += len(lines)
        elif lines:
            yield line_no, lines
            line_no += len(lines)
        if len(carry) > max_line_bytes:
            skipping = LineTooLong(line_no, carry[:SNIFF_BYTES], len(carry))
            carry = b""
    if skipping is not None:
        yield skipping
    elif carry:
        yield line_no, [carry]


def _with_markers(
    line_no: int, lines: list[bytes], max_line_bytes: int
) -> Iterator[tuple[int, list[bytes]] | LineTooLong]:
    """Split a block's lines around the ones over the limit, which become ``LineTooLong`` markers."""
    start = 0
    for index, line in enumerate(lines):
        if len(line) > max_line_bytes:
            if index > start:
                yield line_no + start, lines[start:index]
            yield LineTooLong(line_no + index, line[:SNIFF_BYTES], len(line))
            start = index + 1
    if start < len(lines):
        yield line_no + start, lines[start:]


def line_start_after(path: Path, offset: int, limit: int) -> int | None:
    """The offset of the first line that starts at or after ``offset`` (None if none before ``limit``)."""
    with open(path, "rb") as handle:
        handle.seek(max(offset - 1, 0))
        position = max(offset - 1, 0)
        while position < limit:
            block = handle.read(1 << 20)
            if not block:
                return None
            newline = block.find(b"\n")
            if newline >= 0:
                start = position + newline + 1
                return start if start < limit else None
            position += len(block)
    return None


def expand_sources(sources: Sequence[Path]) -> list[tuple[Path, bool]]:
    """Files to read, in order: ``(path, given explicitly)``; a directory adds its files sorted by path."""
    if not sources:
        raise InputError("no input given", hint="pass one or more audit log files or directories")
    files: list[tuple[Path, bool]] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            found = sorted(
                p
                for p in path.rglob("*")
                if p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
                and p.name.lower() not in _SKIP_NAMES
            )
            files.extend((p, False) for p in found)
        elif path.is_file():
            files.append((path, True))
        elif path.exists():
            raise InputError(f"{path}: not a regular file or directory")
        else:
            raise InputError(f"{path}: no such file or directory", hint="check the path")
    if not files:
        raise InputError(
            f"no files found in {', '.join(str(s) for s in sources)}",
            hint="pass audit log files, or a directory that contains them",
        )
    return files


def open_source(path: Path, max_line_bytes: int) -> OpenedSource:
    """Open ``path``, detect compression from magic bytes and format from the first decompressed bytes.

    Raises ``InputError`` for binary data, an unsupported compression or an unrecognised format.
    """
    try:
        raw: BinaryIO = open(path, "rb")  # noqa: SIM115 - closed by OpenedSource.close
    except OSError as exc:
        raise InputError(f"{path}: cannot open ({exc.strerror})") from exc
    try:
        size = path.stat().st_size
        magic = raw.read(8)
        raw.seek(0)
        compression: Compression = "none"
        for prefix, name in _MAGIC:
            if magic.startswith(prefix):
                compression = name
        for prefix, name in _UNSUPPORTED_MAGIC.items():
            if magic.startswith(prefix):
                raise InputError(
                    f"{path}: {name}-compressed input is not supported",
                    hint="decompress it first, or recompress with gzip or xz",
                )
        stream = _decompressor(raw, compression)
        head, pending = _read_head(stream)
        fmt = sniff_format(head, path, max_line_bytes, compressed=compression != "none")
        if pending is not None and not head:
            raise InputError(
                f"{path}: {compression} data is unreadable ({pending})",
                hint="the file is corrupt or truncated from the start; copy it again",
            )
        return OpenedSource(path, str(path), compression, fmt, size, raw, stream, head, pending)
    except BaseException:
        raw.close()
        raise


def _decompressor(raw: BinaryIO, compression: Compression) -> BinaryIO:
    if compression == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]
    if compression == "xz":
        return lzma.LZMAFile(raw, mode="rb")  # type: ignore[return-value]
    if compression == "bz2":
        return bz2.BZ2File(raw, mode="rb")  # type: ignore[return-value]
    return raw


def _read_head(stream: BinaryIO) -> tuple[bytes, BaseException | None]:
    """First ~64 KiB of decompressed content, and the error that stopped it early, if any."""
    return _read_up_to(stream, SNIFF_BYTES)


def _read_up_to(stream: BinaryIO, limit: int) -> tuple[bytes, BaseException | None]:
    """About ``limit`` bytes (b"" at the end) and the stream error that cut them short, if any.

    What was decompressed before a corruption is returned, not lost, so a truncated file keeps its rows.
    """
    read1 = getattr(stream, "read1", None) or stream.read
    parts: list[bytes] = []
    size = 0
    try:
        while size < limit:
            chunk = read1(limit)
            if not chunk:
                break
            parts.append(chunk)
            size += len(chunk)
    except STREAM_ERRORS as exc:
        return b"".join(parts), exc
    return b"".join(parts), None


def sniff_format(head: bytes, path: Path, max_line_bytes: int, compressed: bool = False) -> Format:
    """Which reader fits: JSON lines, JSON document(s), the Logstash CSV, or an empty file."""
    body = head[3:] if head.startswith(codecs.BOM_UTF8) else head
    stripped = body.lstrip()
    if not stripped:
        return "empty"
    if b"\x00" in body or not _is_utf8_text(body):
        what = "binary data after decompression" if compressed else "binary data"
        raise InputError(
            f"{path}: {what}, not an audit log",
            hint="expected JSON lines of audit Events, an Event/EventList JSON document, "
            "or the 15-column Logstash CSV (optionally .gz/.xz/.bz2)",
        )
    first = stripped[:1]
    if first in (b"{", b"["):
        complete = body.split(b"\n")[:-1]
        lines = [ln for ln in complete if ln.strip()]
        if not lines:
            return "jsonl"  # one long first line (or a one-line file): JSON lines
        first_line = lines[0]
        try:
            orjson.loads(first_line)  # JSON lines: the first line is a whole value
        except orjson.JSONDecodeError:
            return "json-document"  # pretty-printed (or a corrupt first line: documents resync per line)
        return "jsonl"
    first_line = stripped.split(b"\n", 1)[0].decode("utf-8", "replace")
    try:
        row = next(csv.reader(io.StringIO(first_line)))
    except (csv.Error, StopIteration):
        row = []
    if len(row) == CSV_COLUMNS:
        return "logstash-csv"
    raise InputError(
        f"{path}: not an audit log (starts with {stripped[:40]!r})",
        hint="expected JSON lines of audit Events, an Event/EventList JSON document, "
        "or the 15-column Logstash CSV",
    )


def _is_utf8_text(data: bytes) -> bool:
    """True when ``data`` decodes as UTF-8 (a character cut at the end is allowed)."""
    try:
        codecs.getincrementaldecoder("utf-8")().decode(data, final=False)
    except UnicodeDecodeError:
        return False
    return True


def _describe_stream_error(source: OpenedSource, exc: BaseException) -> str:
    if isinstance(exc, EOFError):
        return f"{source.compression} stream is truncated ({exc})"
    return f"{source.compression} stream is corrupt ({exc})"
