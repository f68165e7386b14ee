"""The one rule for which event rows are kept, and their Arrow columns.

Why one module: the cleaner keeps a row when its fields have the ``events.parquet`` types and its
request time is present and within the range every tool downstream can hold (nanosecond timestamps:
1677-09-21 .. 2262-04-11). The webhook receiver answers 200 only for items this same rule keeps, so
nothing it acknowledges is later rejected by ``clean``. Columns are converted a whole batch at once
(vectorised); only a batch Arrow refuses is searched row by row for the offenders.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from perfspec.audit.fastpath import Event, event_columns, event_row_of
from perfspec.audit.readers import Row, shown
from perfspec.audit.schema import EVENT_COLUMNS, EVENTS_SCHEMA, TIMESTAMP_COLUMNS, UTC_US

_COLUMN_TYPES = {f.name: f.type for f in EVENTS_SCHEMA}
_RECEIVED = EVENT_COLUMNS.index("request_received_at")
_TIMESTAMP_INDEXES = tuple(EVENT_COLUMNS.index(name) for name in TIMESTAMP_COLUMNS)
#: Timestamps outside the int64-nanosecond range (pandas, Polars' default, Spark) are refused.
EARLIEST = dt.datetime(1677, 9, 22, tzinfo=dt.UTC)
LATEST = dt.datetime(2262, 4, 11, tzinfo=dt.UTC)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
#: As microseconds since the epoch: compared on int64 views (a tz-aware Arrow scalar imports pandas).
_EARLIEST_US = (EARLIEST - _EPOCH) // dt.timedelta(microseconds=1)
_LATEST_US = (LATEST - _EPOCH) // dt.timedelta(microseconds=1)
_CONVERSION_ERRORS = (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError)


@dataclass
class Accepted:
    """The kept rows' columns (None when none is kept), their indexes, and ``(index, reason, detail)``
    of every refused row, indexes into the rows given."""

    arrays: list[pa.Array] | None
    kept: list[int]
    refused: list[tuple[int, str, str]]


def as_row(row: Row | Event) -> Row:
    """A tuple row, from a tuple or a fast-path Event."""
    return row if isinstance(row, tuple) else event_row_of(row)


def timestamps(strings: pa.Array) -> pa.Array:
    """RFC 3339 strings -> timestamp[us, UTC]. Fractions finer than microseconds (API servers write
    nanoseconds) are truncated per value, so any mix of precisions and years converts together."""
    try:
        return strings.cast(UTC_US)
    except pa.ArrowInvalid:
        trimmed = pc.replace_substring_regex(strings, r"(\.\d{6})\d+", r"\1")
        return trimmed.cast(UTC_US)


def _columns(rows: Sequence[Row | Event], mixed: bool) -> list[Sequence[Any]]:
    """The event columns of rows: fast-path Events, or (``mixed``) Events and tuples, in order."""
    if not mixed:
        return event_columns(rows)  # type: ignore[arg-type]
    tuple_at = [i for i, row in enumerate(rows) if row.__class__ is tuple]
    if len(tuple_at) * 4 > len(rows):
        return list(zip(*map(as_row, rows), strict=True))
    columns = event_columns([row for row in rows if row.__class__ is not tuple])  # type: ignore[misc]
    merged_columns: list[Sequence[Any]] = []
    for c, column in enumerate(columns):  # splice the few tuple rows in, in order
        merged: list[Any] = []
        taken = 0
        for k, i in enumerate(tuple_at):
            merged.extend(column[taken : i - k])
            merged.append(rows[i][c])  # type: ignore[index]
            taken = i - k
        merged.extend(column[taken:])
        merged_columns.append(merged)
    return merged_columns


def column_arrays(rows: Sequence[Row | Event], mixed: bool = True) -> list[pa.Array]:
    """Arrow arrays of the event columns; raises if any value has the wrong type or timestamp format."""
    arrays: list[pa.Array] = []
    for name, values in zip(EVENT_COLUMNS, _columns(rows, mixed), strict=True):
        if name in TIMESTAMP_COLUMNS:
            arrays.append(timestamps(pa.array(values, pa.string())))
        else:
            arrays.append(pa.array(values, _COLUMN_TYPES[name]))
    return arrays


def row_problem(row: Row) -> tuple[str, str] | None:
    """Why Arrow refuses one row (``bad-field``), or None."""
    for name, value in zip(EVENT_COLUMNS, row, strict=True):
        if value is None:
            continue
        try:
            if name in TIMESTAMP_COLUMNS:
                timestamps(pa.array([value], pa.string()))
            else:
                pa.array([value], _COLUMN_TYPES[name])
        except _CONVERSION_ERRORS:
            return ("bad-field", f"{name}={shown(value)} is not a valid {_COLUMN_TYPES[name]}")
    return None


def accept_rows(rows: Sequence[Row | Event], mixed: bool = True) -> Accepted:
    """Apply the rule to a batch: columns of the rows kept, reasons for the rows refused."""
    refused: list[tuple[int, str, str]] = []
    kept = list(range(len(rows)))
    try:
        arrays = column_arrays(rows, mixed)
    except _CONVERSION_ERRORS:
        kept = []
        for index, row in enumerate(rows):
            problem = row_problem(as_row(row))
            if problem is None:
                kept.append(index)
            else:
                refused.append((index, *problem))
        if not kept:
            return Accepted(None, [], refused)
        arrays = column_arrays([as_row(rows[i]) for i in kept], mixed=True)
    bad = _untimed(arrays)
    if not bad.any():
        return Accepted(arrays, kept, refused)
    for position in np.flatnonzero(bad):
        refused.append((kept[position], *_timestamp_problem(arrays, int(position))))
    keep_mask = pa.array(~bad)
    arrays = [array.filter(keep_mask) for array in arrays]
    kept = [index for index, drop in zip(kept, bad.tolist(), strict=True) if not drop]
    refused.sort()
    return Accepted(arrays if kept else None, kept, refused)


def accept_columns(arrays: list[pa.Array]) -> tuple[list[pa.Array], np.ndarray]:
    """The rule for rows already in columns (the native scanner's, timestamps still strings): the kept
    rows' arrays, and the indexes of the rows it refuses (their reasons come from the row path, which
    sees them again: one place decides every reason)."""
    converted = list(arrays)
    bad = np.zeros(len(arrays[0]), dtype=bool)
    for column in _TIMESTAMP_INDEXES:
        converted[column], failed = _timestamps_or_null(arrays[column])
        bad |= failed
    bad |= _untimed(converted)
    if bad.any():
        keep = pa.array(~bad)
        converted = [array.filter(keep) for array in converted]
    return converted, np.flatnonzero(bad)


def _untimed(arrays: list[pa.Array]) -> np.ndarray:
    """Rows the rule refuses for their time: no request time, or a timestamp outside the range."""
    bad = np.array(arrays[_RECEIVED].is_null().to_numpy(zero_copy_only=False), dtype=bool)
    for column in _TIMESTAMP_INDEXES:
        values = arrays[column].cast(pa.int64())
        outside = pc.or_kleene(pc.less(values, _EARLIEST_US), pc.greater(values, _LATEST_US))
        bad |= pc.fill_null(outside, False).to_numpy(zero_copy_only=False)
    return bad


def _timestamps_or_null(strings: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """``timestamps(strings)``, with null (and True in the mask) where a value does not convert; the
    offenders are found by halving, so a clean array costs one conversion."""
    try:
        return timestamps(strings), np.zeros(len(strings), dtype=bool)
    except _CONVERSION_ERRORS:
        if len(strings) == 1:
            return pa.nulls(1, UTC_US), np.ones(1, dtype=bool)
    middle = len(strings) // 2
    head, head_bad = _timestamps_or_null(strings.slice(0, middle))
    tail, tail_bad = _timestamps_or_null(strings.slice(middle))
    return pa.concat_arrays([head, tail]), np.concatenate([head_bad, tail_bad])


def _when(micros: int | None) -> str:
    """A timestamp for a reject reason; years Python cannot hold (0, or past 9999) as a count."""
    if micros is None:
        return "null"
    try:
        return (_EPOCH + dt.timedelta(microseconds=micros)).isoformat()
    except OverflowError:
        return f"{micros} us from 1970"


def _timestamp_problem(arrays: list[pa.Array], position: int) -> tuple[str, str]:
    if not arrays[_RECEIVED][position].is_valid:
        return ("missing-timestamp", "no requestReceivedTimestamp")
    shown = []
    for name, column in zip(TIMESTAMP_COLUMNS, _TIMESTAMP_INDEXES, strict=True):
        micros = arrays[column].cast(pa.int64())[position].as_py()
        shown.append(f"{name}={_when(micros)}")
    return ("bad-timestamp", f"{', '.join(shown)}: outside {EARLIEST:%Y-%m-%d} .. {LATEST:%Y-%m-%d}")
