"""Opening audit-log files: which files, which compression, which format, and their lines in blocks.

Why sniff bytes instead of trusting names: logs are renamed, rotated and re-compressed by every tool on
their way from an API server to here. Why blocks: reading 4 MiB at a time and splitting on ``\\n`` is
what keeps the cleaner fast and its memory flat whatever the file size; a line longer than
``max_line_bytes`` is never held whole (only its first bytes are kept for the reject record).
"""

from __future__ import annotations

import bz2
import codecs
import contextlib
import csv
import io
import lzma
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal, NamedTuple

import orjson

from perfspec.errors import InputError

Format = Literal["jsonl", "json-document", "logstash-csv", "empty"]
Compression = Literal["none", "gzip", "xz", "bz2"]

BLOCK_BYTES = 4 * 1024 * 1024
SNIFF_BYTES = 64 * 1024
#: The format is the majority's over this many first non-blank lines, read from at most SNIFF_MAX_BYTES.
SNIFF_LINES = 32
#: Without a majority, this many records of one format (and more than of the other) still decide it.
MIN_VOTES = 3
SNIFF_MAX_BYTES = 1024 * 1024
CSV_COLUMNS = 15
#: What ``perfspec clean`` writes (a folder holding them is never read back as input).
OUTPUT_FILES = ("events.parquet", "rejects.jsonl", "summary.json")

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


class TrailingGarbage(ValueError):
    """Bytes that are neither NUL padding nor another stream after the end of a compressed stream."""


#: What a broken compressed stream raises while being read.
STREAM_ERRORS: tuple[type[BaseException], ...] = (
    EOFError,
    OSError,
    lzma.LZMAError,
    zlib.error,
    TrailingGarbage,
)


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
    _stream: BinaryIO | _Decompressed
    _head: bytes
    _pending_error: BaseException | None = None
    _blank_lines: int = 0  # leading blank lines, counted while sniffing and given back as empty lines
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
        while self._blank_lines:
            count = min(self._blank_lines, BLOCK_BYTES)
            self._blank_lines -= count
            yield b"\n" * count
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

    def line_chunks(self, max_line_bytes: int) -> Iterator[bytes | LineTooLong]:
        """Whole-line chunks of the whole file, for the native scanner; see ``split_chunks``."""
        return split_chunks(self.byte_blocks(), max_line_bytes, self._describe)

    def _describe(self, exc: BaseException) -> str:
        return _describe_stream_error(self, exc)


def range_chunks(path: Path, start: int, end: int, max_line_bytes: int) -> Iterator[memoryview | LineTooLong]:
    """Whole-line chunks of the byte range ``[start, end)`` of an uncompressed file (``start`` at a
    line start), for the native scanner: views of one reused buffer (no allocation per block, no
    page faults after the first; each view is valid until the next one is asked for). A line over
    ``max_line_bytes`` is one ``LineTooLong`` (``line_no`` 0), read past without being held."""
    buffer = bytearray(BLOCK_BYTES + max_line_bytes + 1)  # a block plus the longest line kept whole
    view = memoryview(buffer)
    held = 0  # the start of a line, moved to the front of the buffer
    with open(path, "rb", buffering=0) as handle:
        handle.seek(start)
        left = end - start
        while left > 0 or held:
            got = handle.readinto(view[held : held + min(BLOCK_BYTES, left)]) if left > 0 else 0
            left = left - got if got else 0  # a file shorter than its range ends the range
            filled = held + got
            cut = buffer.rfind(b"\n", held, filled) + 1 or (filled if left <= 0 else 0)
            if cut:
                yield view[:cut]
                held = filled - cut
                buffer[:held] = buffer[cut:filled]  # same length: allowed while views exist
            else:
                held = filled
            if held > max_line_bytes:
                length = held
                prefix = bytes(view[:SNIFF_BYTES])
                held = 0
                while left > 0:
                    got = handle.readinto(view[: min(BLOCK_BYTES, left)])
                    left -= got
                    newline = buffer.find(b"\n", 0, got)
                    if newline >= 0:
                        length += newline
                        held = got - newline - 1
                        buffer[:held] = buffer[newline + 1 : got]
                        break
                    length += got
                yield LineTooLong(0, prefix, length)


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
    without a newline is included. Raises ``StreamBroken`` if decompression fails midway. The blocks
    are ``split_chunks``' (one place cuts blocks into lines and skips over-long ones), numbered here.
    """
    line_no = 1
    try:
        for chunk in split_chunks(blocks, max_line_bytes, describe):
            if isinstance(chunk, LineTooLong):
                yield LineTooLong(line_no, chunk.prefix, chunk.length)
                line_no += 1
                continue
            lines = chunk.split(b"\n")
            if chunk.endswith(b"\n"):
                lines.pop()
            if len(chunk) > max_line_bytes and any(len(line) > max_line_bytes for line in lines):
                yield from _with_markers(line_no, lines, max_line_bytes)
            else:
                yield line_no, lines
            line_no += len(lines)
    except ChunkStreamBroken as broken:
        raise StreamBroken(line_no, broken.tail, broken.detail) from broken.__cause__


class ChunkStreamBroken(Exception):
    """``split_chunks``' stream failed; ``tail`` is the partial line read before the failure."""

    def __init__(self, tail: bytes, detail: str) -> None:
        super().__init__(detail)
        self.tail = tail
        self.detail = detail


def split_chunks(
    blocks: Iterator[bytes], max_line_bytes: int, describe: Callable[[BaseException], str] = str
) -> Iterator[bytes | LineTooLong]:
    """Whole-line chunks of ``blocks`` for the native scanner: ``split_lines`` without a bytes object
    per line. A chunk holds complete lines (the file's last one may lack its newline); a line longer
    than ``max_line_bytes`` that spans blocks is one ``LineTooLong`` (``line_no`` 0: the reader, which
    counts lines, numbers it); a shorter over-long line stays in its chunk for the reader to mark.
    Raises ``ChunkStreamBroken`` if decompression fails midway (after any marker being skipped)."""
    carry = b""
    skipping: LineTooLong | None = None
    while True:
        try:
            block = next(blocks)
        except StopIteration:
            break
        except STREAM_ERRORS as exc:
            if skipping is not None:
                yield skipping
                carry = b""
            raise ChunkStreamBroken(carry, describe(exc)) from exc
        if skipping is not None:
            newline = block.find(b"\n")
            if newline < 0:
                skipping = LineTooLong(0, skipping.prefix, skipping.length + len(block))
                continue
            yield LineTooLong(0, skipping.prefix, skipping.length + newline)
            skipping = None
            block = block[newline + 1 :]
        data = carry + block if carry else block
        end = data.rfind(b"\n") + 1
        carry = data[end:]
        if end:
            yield data[:end]
        if len(carry) > max_line_bytes:
            skipping = LineTooLong(0, carry[:SNIFF_BYTES], len(carry))
            carry = b""
    if skipping is not None:
        yield skipping
    elif carry:
        yield carry


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


def expand_sources(sources: Sequence[Path], out_dir: Path | None = None) -> list[tuple[Path, bool]]:
    """Files to read, in order: ``(path, given explicitly)``; a directory adds its files sorted by path.

    A directory's hidden files, a campaign's side files and what clean wrote there (``out_dir``, or an
    earlier run's output folder) are left out, so cleaning into the input folder reads the same events.
    """
    if not sources:
        raise InputError("no input given", hint="pass one or more audit log files or directories")
    files: list[tuple[Path, bool]] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            found = [
                p
                for p in path.rglob("*")
                if p.is_file()
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
                and p.name.lower() not in _SKIP_NAMES
            ]
            files.extend((p, False) for p in sorted(_without_outputs(path, found, out_dir)))
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


def _without_outputs(root: Path, files: list[Path], out_dir: Path | None) -> list[Path]:
    """``files`` (found under ``root``) less clean's outputs: an output folder below ``root`` is left out
    whole; ``root`` itself as one (``--out`` the input folder) loses only the files clean writes."""
    summary_name = OUTPUT_FILES[2]
    own = {p.relative_to(root).parts[:-1] for p in files if p.name == summary_name and _written_by_clean(p)}
    if out_dir is not None:
        with contextlib.suppress(ValueError, OSError):  # ValueError: not inside this folder
            own.add(Path(out_dir).resolve().relative_to(root.resolve()).parts)
    if not own:
        return files
    kept = []
    for path in files:
        parts = path.relative_to(root).parts
        if len(parts) == 1 and () in own and path.name in OUTPUT_FILES:
            continue
        if any(folder and parts[: len(folder)] == folder for folder in own):
            continue
        kept.append(path)
    return kept


def _written_by_clean(summary: Path) -> bool:
    """True for a ``summary.json`` written by clean beside its ``events.parquet``."""
    if not (summary.parent / OUTPUT_FILES[0]).is_file():
        return False
    try:
        value = orjson.loads(summary.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return False
    return isinstance(value, dict) and {"read", "kept", "duplicates", "rejected", "files"} <= value.keys()


def is_compressed(path: Path) -> bool:
    """Whether ``path`` starts like a gzip, xz or bz2 stream (the magic bytes ``open_source`` reads)."""
    with open(path, "rb") as handle:
        magic = handle.read(8)
    return any(magic.startswith(prefix) for prefix, _ in _MAGIC)


def open_source(path: Path) -> OpenedSource:
    """Open ``path``, detect compression from magic bytes and format from its first records.

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
        for prefix, unsupported in _UNSUPPORTED_MAGIC.items():
            if magic.startswith(prefix):
                raise InputError(
                    f"{path}: {unsupported}-compressed input is not supported",
                    hint="decompress it first, or recompress with gzip or xz",
                )
        stream = raw if compression == "none" else _Decompressed(raw, compression, size)
        head = _read_head(stream)
        fmt = sniff_format(head.data, path, compression != "none", head.at_end)
        if head.error is not None and not head.data.strip():
            raise InputError(
                f"{path}: {compression} data is unreadable ({head.error})",
                hint="the file is corrupt or truncated from the start; copy it again",
            )
        return OpenedSource(
            path, str(path), compression, fmt, size, raw, stream, head.data, head.error, head.blank_lines,
        )  # fmt: skip
    except BaseException:
        raw.close()
        raise


_READ_BYTES = 256 * 1024
_STREAM_MAGIC: dict[str, bytes] = {name: prefix for prefix, name in _MAGIC}


class _Decompressed:
    """The decompressed bytes of a gzip, xz or bz2 file: one rule for all three on what follows a stream.

    Why not ``GzipFile``/``LZMAFile``/``BZ2File``: after the end of a stream gzip fails on foreign bytes
    while xz and bz2 drop them silently (with a whole second xz stream after padding). Here NUL padding
    is skipped (gzip and xz allow it), another stream of the kind is read on, and anything else raises
    ``TrailingGarbage`` once every decoded byte was given (a last line without newline gets one first,
    so it is read as the complete line it is).
    """

    def __init__(self, raw: BinaryIO, compression: Compression, size: int) -> None:
        self._raw = raw
        self._compression = compression
        self._size = size
        self._magic = _STREAM_MAGIC[compression]
        self._decompressor: Any = self._new()
        self._input = b""  # compressed bytes read but not given to the decompressor yet
        self._between = False  # after the end of a stream
        self._finished = False
        self._error: BaseException | None = None
        self._last = b"\n"  # the last byte given

    def _new(self) -> Any:
        if self._compression == "gzip":
            return zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # header, CRC and size checked
        if self._compression == "xz":
            return lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
        return bz2.BZ2Decompressor()

    def read1(self, limit: int) -> bytes:
        """Up to ``limit`` decompressed bytes; b"" at the end."""
        while not self._finished:
            if self._error is not None:
                if self._last != b"\n":
                    self._last = b"\n"
                    return b"\n"
                raise self._error
            if self._between:
                self._next_stream()
                continue
            out = self._decompress(limit)
            if out:
                self._last = out[-1:]
                return out
        return b""

    read = read1

    def _decompress(self, limit: int) -> bytes:
        decompressor = self._decompressor
        if self._compression == "gzip":  # zlib hands back the input it did not use
            data = self._input or self._raw.read(_READ_BYTES)
            ended = not data
            out = decompressor.decompress(data, limit)
            self._input = decompressor.unconsumed_tail
        else:  # lzma and bz2 keep it inside
            ended = False
            if self._input:
                data, self._input = self._input, b""
            elif decompressor.needs_input:
                data = self._raw.read(_READ_BYTES)
                ended = not data
            else:
                data = b""
            out = decompressor.decompress(data, limit)
        if decompressor.eof:
            self._input = decompressor.unused_data
            self._between = True
        elif ended and not out:
            raise EOFError("Compressed file ended before the end-of-stream marker was reached")
        return out

    def _next_stream(self) -> None:
        """After a stream: the next one, the end of the file, or garbage (noted, raised after the data)."""
        self._between = False
        data = self._input.lstrip(b"\0")
        while len(data) < len(self._magic):
            more = self._raw.read(_READ_BYTES)
            if not more:
                break
            data = (data + more).lstrip(b"\0")
        self._input = data
        if not data:
            self._finished = True
        elif data.startswith(self._magic):
            self._decompressor = self._new()
        else:
            start = self._raw.tell() - len(data)
            self._error = TrailingGarbage(
                f"{self._size - start} bytes of trailing garbage after the {self._compression} stream "
                f"(from byte {start}) ignored"
            )

    def close(self) -> None:
        self._raw.close()


class _Head(NamedTuple):
    """What ``_read_head`` read: ``blank_lines``, then ``data`` (at the end or not)."""

    blank_lines: int
    data: bytes
    at_end: bool
    error: BaseException | None


def _read_head(stream: BinaryIO | _Decompressed) -> _Head:
    """The first records, for ``sniff_format``: about SNIFF_LINES non-blank lines, at most SNIFF_MAX_BYTES.

    Leading blank lines are only counted (a long run of them is neither held in memory nor taken for an
    empty file); the readers get them back as empty lines, which they skip alike.
    """
    data, error = _read_up_to(stream, SNIFF_BYTES)
    at_end = error is None and len(data) < SNIFF_BYTES
    blank_lines = 0
    if data.startswith(codecs.BOM_UTF8):  # a byte order mark carries no data, and the JSON parsers refuse it
        data = data[3:]
    while data and not data.strip() and not at_end and error is None:
        cut = data.rfind(b"\n") + 1
        blank_lines += data.count(b"\n", 0, cut)
        more, error = _read_up_to(stream, SNIFF_BYTES)
        at_end = error is None and len(more) < SNIFF_BYTES
        data = data[cut:][-SNIFF_BYTES:] + more  # blank space without a newline: its length does not matter
    while not at_end and error is None and len(data) < SNIFF_MAX_BYTES and _count_records(data) < SNIFF_LINES:
        more, error = _read_up_to(stream, SNIFF_BYTES)
        at_end = error is None and len(more) < SNIFF_BYTES
        data += more
    return _Head(blank_lines, data, at_end, error)


def _count_records(data: bytes) -> int:
    """Complete non-blank lines in ``data``."""
    return sum(1 for line in data.split(b"\n")[:-1] if line.strip())


def _read_up_to(stream: BinaryIO | _Decompressed, limit: int) -> tuple[bytes, BaseException | None]:
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


def sniff_format(head: bytes, path: Path, compressed: bool = False, at_end: bool = False) -> Format:
    """Which reader fits: JSON lines, JSON document(s), the Logstash CSV, or an empty file.

    The first SNIFF_LINES non-blank lines vote (a line that is a JSON object or array for JSON lines, a
    15-field row for the CSV), so one torn first line (a log copied from the middle) decides nothing: a
    first line that fits neither does not count against the others, and lines that fit neither (a
    preamble) do not outvote ``MIN_VOTES`` clear records. ``at_end``: ``head`` is the whole file.
    """
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
    lines = body.split(b"\n")
    if not at_end:
        lines.pop()  # may be cut short
    records = [line for line in lines if line.strip()][:SNIFF_LINES]
    starts_json = stripped[:1] in (b"{", b"[")
    if not records:  # one line longer than the head
        if starts_json:
            return "jsonl"
        records = [stripped.split(b"\n", 1)[0]]
    votes = [_vote(record) for record in records]
    json_votes = votes.count("jsonl")
    csv_votes = votes.count("logstash-csv")
    voters = len(votes) - (votes[0] is None)
    enough = min(MIN_VOTES, voters)  # a few clear records outweigh a preamble of lines that fit nothing
    if json_votes > csv_votes and (2 * json_votes > voters or json_votes >= enough):
        return "jsonl"
    if csv_votes > json_votes and (2 * csv_votes > voters or csv_votes >= enough):
        return "logstash-csv"
    if starts_json:
        return "json-document"  # pretty-printed (corrupt documents resync per line)
    raise InputError(
        f"{path}: not an audit log (starts with {stripped[:40]!r})",
        hint="expected JSON lines of audit Events, an Event/EventList JSON document, "
        "or the 15-column Logstash CSV",
    )


def _vote(line: bytes) -> Format | None:
    """The format one line belongs to, if any (a JSON object or array line; a 15-field CSV row)."""
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        pass
    else:
        return "jsonl" if isinstance(value, dict | list) else None
    try:
        row = next(csv.reader(io.StringIO(line.decode("utf-8", "replace").rstrip("\r"))))
    except (csv.Error, StopIteration):
        return None
    return "logstash-csv" if len(row) == CSV_COLUMNS else None


def _is_utf8_text(data: bytes) -> bool:
    """True when ``data`` decodes as UTF-8 (a character cut at the end is allowed)."""
    try:
        codecs.getincrementaldecoder("utf-8")().decode(data, final=False)
    except UnicodeDecodeError:
        return False
    return True


def _describe_stream_error(source: OpenedSource, exc: BaseException) -> str:
    if isinstance(exc, TrailingGarbage):
        return str(exc)
    if isinstance(exc, EOFError):
        return f"{source.compression} stream is truncated ({exc})"
    return f"{source.compression} stream is corrupt ({exc})"
