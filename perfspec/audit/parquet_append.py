"""Append the row groups of one Parquet file to another, their bytes copied unchanged.

Why: pyarrow encodes a Parquet file on one core, and encoding is most of pass 2 of ``perfspec clean``.
Two processes each encode half of the row groups (the first half and the second half, in log order)
into a file of their own; ``append_row_groups`` then cuts the first file's footer off, copies the
second file's row-group bytes after the first's and writes one footer listing all of them, the second
file's offsets moved by where its bytes now lie. Page bytes hold no absolute offsets, so the result is
byte for byte the file one writer would have written (``tests/test_parquet_append.py`` checks it).

The footer is Thrift, compact protocol. It is walked, not decoded: spans are copied as they are and
only the fields that hold file offsets (and the row-group ordinals, and the file's row count) are
written anew, so a footer of a few hundred row groups takes milliseconds.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

MAGIC = b"PAR1"
_STOP, _TRUE, _FALSE, _BYTE, _I16, _I32, _I64, _DOUBLE, _BINARY, _LIST, _SET, _MAP, _STRUCT = range(13)
_COPY_BYTES = 8 * 1024 * 1024

# parquet.thrift field ids: FileMetaData, RowGroup, ColumnChunk, ColumnMetaData
_FILE_NUM_ROWS, _FILE_ROW_GROUPS = 3, 4
_GROUP_COLUMNS, _GROUP_FILE_OFFSET, _GROUP_ORDINAL = 1, 5, 7
_CHUNK_OFFSET, _CHUNK_META = 2, 3
#: offset_index_offset, column_index_offset: page indexes hold page offsets of their own (not moved here)
_CHUNK_PAGE_INDEXES = (4, 6)
_META_OFFSETS = (9, 10, 11, 14)  # data_page_offset, index_page_offset, dictionary_page_offset, bloom_filter


class _Walker:
    """Reads compact-protocol values in ``data`` from ``at``, without building them."""

    def __init__(self, data: bytes, at: int = 0) -> None:
        self.data = data
        self.at = at

    def varint(self) -> int:
        shift = result = 0
        data = self.data
        while True:
            byte = data[self.at]
            self.at += 1
            result |= (byte & 0x7F) << shift
            if byte < 0x80:
                return result
            shift += 7

    def zigzag(self) -> int:
        value = self.varint()
        return (value >> 1) ^ -(value & 1)

    def field(self, last: int) -> tuple[int, int]:
        """The next field header: (field id, type); type ``_STOP`` at the end of a struct."""
        header = self.data[self.at]
        self.at += 1
        kind = header & 0x0F
        if kind == _STOP:
            return 0, _STOP
        delta = header >> 4
        return (last + delta if delta else self.zigzag()), kind

    def list_header(self) -> tuple[int, int]:
        header = self.data[self.at]
        self.at += 1
        size = header >> 4
        if size == 15:
            size = self.varint()
        return size, header & 0x0F

    def skip(self, kind: int) -> None:
        if kind in (_TRUE, _FALSE, _BYTE):  # a bool in a list or map is one byte (in a field: its header)
            self.at += 1
        elif kind in (_I16, _I32, _I64):
            self.varint()
        elif kind == _DOUBLE:
            self.at += 8
        elif kind == _BINARY:
            size = self.varint()
            self.at += size
        elif kind in (_LIST, _SET):
            size, item = self.list_header()
            for _ in range(size):
                self.skip(item)
        elif kind == _MAP:
            size = self.varint()
            if size:
                kinds = self.data[self.at]
                self.at += 1
                for _ in range(size):
                    self.skip(kinds >> 4)
                    self.skip(kinds & 0x0F)
        elif kind == _STRUCT:
            last = 0
            while True:
                last, field_kind = self.field(last)
                if field_kind == _STOP:
                    return
                if field_kind not in (_TRUE, _FALSE):
                    self.skip(field_kind)
        else:
            raise ValueError(f"not a Parquet footer (Thrift type {kind})")


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        if value < 0x80:
            out.append(value)
            return bytes(out)
        out.append((value & 0x7F) | 0x80)
        value >>= 7


def _zigzag(value: int) -> bytes:
    return _varint((value << 1) ^ (value >> 63))


def _list_header(size: int, kind: int) -> bytes:
    return bytes([(size << 4) | kind]) if size < 15 else bytes([0xF0 | kind]) + _varint(size)


class _Rewriter:
    """Copies structs from a walker into ``out``, rewriting the integer fields a patch names: the output
    is the input's bytes but for those values (a compact-protocol integer is a varint: its length may
    change, nothing else moves)."""

    def __init__(self, walker: _Walker, out: bytearray) -> None:
        self.walker = walker
        self.out = out
        self.copied = walker.at  # input bytes before this are in ``out`` already

    def flush(self) -> None:
        self.out += self.walker.data[self.copied : self.walker.at]
        self.copied = self.walker.at

    def struct(self, patch: dict[int, tuple[int, bool]], nested: dict[int, Callable[[], None]]) -> None:
        """``patch``: field id -> (amount added to that integer, whether a 0 is moved too: an offset of 0
        means "none"); ``nested``: field id -> what rewrites that field's value (a struct or a list)."""
        walker = self.walker
        last = 0
        while True:
            last, kind = walker.field(last)
            if kind == _STOP:
                return
            if last in patch and kind in (_I16, _I32, _I64):
                self.flush()
                value = walker.zigzag()
                amount, zero_too = patch[last]
                self.out += _zigzag(value + amount if value > 0 or zero_too else value)
                self.copied = walker.at
            elif last in nested:
                nested[last]()
            elif kind not in (_TRUE, _FALSE):
                walker.skip(kind)


def _footer(handle: BinaryIO) -> tuple[bytes, int]:
    """A file's footer bytes (FileMetaData) and where its data ends (where the footer starts)."""
    size = handle.seek(0, os.SEEK_END)
    if size < 12:
        raise ValueError("not a Parquet file (too short)")
    handle.seek(size - 8)
    tail = handle.read(8)
    if tail[4:] != MAGIC:
        raise ValueError("not a Parquet file (no PAR1 at its end)")
    length = struct.unpack("<i", tail[:4])[0]
    handle.seek(size - 8 - length)
    return handle.read(length), size - 8 - length


class _Span:
    """Where FileMetaData's num_rows value and row_groups list lie in a footer (``to_end``: also where
    the list ends, which takes walking every row group)."""

    def __init__(self, footer: bytes, to_end: bool = True) -> None:
        walker = _Walker(footer)
        last = 0
        self.rows_at = -1
        while True:
            last, kind = walker.field(last)
            if kind == _STOP:
                raise ValueError("not a Parquet footer (no row_groups)")
            if last == _FILE_NUM_ROWS:
                self.rows_at = walker.at
                self.rows = walker.zigzag()
                self.rows_end = walker.at
            elif last == _FILE_ROW_GROUPS:
                self.list_at = walker.at  # after the field header: the list header
                self.size, item = walker.list_header()
                if item != _STRUCT or self.rows_at < 0:
                    raise ValueError("not a Parquet footer (row_groups not a list, or before num_rows)")
                self.items_at = self.list_end = walker.at
                if to_end:
                    for _ in range(self.size):
                        walker.skip(_STRUCT)
                    self.list_end = walker.at
                return
            else:
                walker.skip(kind)


def _moved_row_groups(footer: bytes, by: int, ordinals_from: int) -> tuple[bytes, int, int]:
    """The row groups of ``footer``, every offset moved ``by`` bytes and every ordinal ``ordinals_from``
    higher: (their bytes, their count, the file's rows)."""
    span = _Span(footer, to_end=False)  # the row groups are walked once, below
    walker = _Walker(footer, span.items_at)
    out = bytearray()
    rewriter = _Rewriter(walker, out)
    moved = (by, False)
    meta_patch = dict.fromkeys(_META_OFFSETS, moved)
    chunk_patch = {_CHUNK_OFFSET: moved}
    group_patch = {_GROUP_FILE_OFFSET: moved, _GROUP_ORDINAL: (ordinals_from, True)}

    def meta() -> None:
        rewriter.struct(meta_patch, {})

    def page_index() -> None:
        raise ValueError("Parquet files with page indexes cannot be appended (their page offsets would move)")

    def chunk() -> None:
        rewriter.struct(chunk_patch, {_CHUNK_META: meta} | dict.fromkeys(_CHUNK_PAGE_INDEXES, page_index))

    def columns() -> None:
        count, item = walker.list_header()
        if item != _STRUCT:
            raise ValueError("not a Parquet footer (columns is not a list of structs)")
        for _ in range(count):
            chunk()

    for _ in range(span.size):
        rewriter.struct(group_patch, {_GROUP_COLUMNS: columns})
    rewriter.flush()
    return bytes(out), span.size, span.rows


def append_row_groups(target: Path, source: Path) -> None:
    """Append the row groups of ``source`` to the Parquet file ``target`` (both written with one schema
    and the same options), in place: ``target``'s footer is cut off, ``source``'s data bytes copied after
    its data, and one footer written listing ``target``'s row groups, then ``source``'s."""
    with open(source, "rb") as src, open(target, "r+b") as dst:
        source_footer, source_end = _footer(src)
        target_footer, target_end = _footer(dst)
        span = _Span(target_footer)
        moved, count, more_rows = _moved_row_groups(source_footer, target_end - len(MAGIC), span.size)
        dst.truncate(target_end)
        dst.seek(target_end)
        _copy(src, len(MAGIC), source_end - len(MAGIC), dst)
        footer = b"".join(
            (
                target_footer[: span.rows_at],
                _zigzag(span.rows + more_rows),
                target_footer[span.rows_end : span.list_at],
                _list_header(span.size + count, _STRUCT),
                target_footer[span.items_at : span.list_end],
                moved,
                target_footer[span.list_end :],
            )
        )
        dst.write(footer)
        dst.write(struct.pack("<i", len(footer)))
        dst.write(MAGIC)


def _copy(source: BinaryIO, offset: int, count: int, target: BinaryIO) -> None:
    """``count`` bytes of ``source`` from ``offset`` to ``target``'s position (its end)."""
    target.flush()
    position = target.tell()
    try:  # in the kernel: no copy through this process
        while count > 0:
            copied = os.copy_file_range(source.fileno(), target.fileno(), count, offset, position)
            if copied == 0:  # end of file, or a file system that copies nothing: the plain way decides
                break
            offset += copied
            position += copied
            count -= copied
    except (AttributeError, OSError):  # no copy_file_range here (not Linux, some file systems)
        pass
    target.seek(position)
    source.seek(offset)
    while count > 0:
        block = source.read(min(_COPY_BYTES, count))
        if not block:
            raise ValueError("a Parquet file shorter than its footer says")
        target.write(block)
        count -= len(block)
