"""The native JSON-lines scanner (``_scan``: C over the vendored yyjson) as Arrow columns.

Why: parsing in Python costs a dict or struct and 17 str objects per event, which Arrow then copies
again; ``_scan.scan`` appends the fields of a whole chunk of lines straight into Arrow buffers (about
1 GB/s a core). It takes only the lines whose values the exact path (``readers.event_row``) would
give the same way and *defers* every other non-empty line to that path, which decides it (see the
header of ``_native/scan.c``). Without a C compiler at install time the module is missing and
``pass1`` keeps its pure-Python loop: same outputs, slower.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

import numpy as np
import pyarrow as pa

from perfspec.audit.schema import (
    EVENT_COLUMNS,
    EVENTS_SCHEMA,
    MAX_AUDIT_ID_CHARS,
    STAGE_RANK,
    TIMESTAMP_COLUMNS,
)


def _load() -> ModuleType | None:
    try:
        import perfspec.audit._scan as _scan
    except ImportError:
        return None
    return _scan


_SCAN = _load()
_STAGES = tuple(name.encode() for name in STAGE_RANK)
#: Arrow type of each scanned column: the event schema's, with the timestamps still strings.
_TYPES = [
    pa.string() if name in TIMESTAMP_COLUMNS else EVENTS_SCHEMA.field(name).type for name in EVENT_COLUMNS
]
_CODE = EVENT_COLUMNS.index("response_code")


def available() -> bool:
    """Whether the native scanner was built (a C compiler at install time)."""
    return _SCAN is not None


@dataclass
class Scanned:
    """One chunk: its line count, the taken rows' columns and their line indexes (0-based, in the
    chunk), the deferred lines' indexes, and every line's ``(start, end)`` byte offsets."""

    lines: int
    arrays: list[pa.Array]
    row_lines: np.ndarray
    deferred: np.ndarray
    bounds: np.ndarray

    def line(self, chunk: bytes | memoryview, index: int) -> bytes:
        """The bytes of line ``index`` (without its newline)."""
        start, end = self.bounds[index]
        return bytes(chunk[start:end])


def scan(chunk: bytes | memoryview, max_line_bytes: int) -> Scanned:
    """Scan a chunk of whole lines (the last one may lack its newline)."""
    if _SCAN is None:
        raise RuntimeError("perfspec.audit._scan is not built")
    lines, rows, strings, code_validity, codes, row_lines, code_nulls, deferred, bounds = _SCAN.scan(
        chunk, max_line_bytes, MAX_AUDIT_ID_CHARS, _STAGES
    )
    arrays: list[pa.Array] = []
    string_at = iter(strings)
    for index, kind in enumerate(_TYPES):
        if index == _CODE:
            buffers = [pa.py_buffer(code_validity) if code_nulls else None, pa.py_buffer(codes)]
            arrays.append(pa.Array.from_buffers(kind, rows, buffers, null_count=code_nulls))
            continue
        validity, offsets, data, nulls = next(string_at)
        if rows == 0:
            arrays.append(pa.array([], kind))
            continue
        buffers = [pa.py_buffer(validity) if nulls else None, pa.py_buffer(offsets), pa.py_buffer(data)]
        arrays.append(pa.Array.from_buffers(kind, rows, buffers, null_count=nulls))
    return Scanned(
        lines,
        arrays,
        np.frombuffer(row_lines, np.int32),
        np.frombuffer(deferred, np.int32),
        np.frombuffer(bounds, np.int64).reshape(-1, 2),
    )
