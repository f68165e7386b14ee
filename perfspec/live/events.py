"""Audit event rows -> the actions the live predictor sees: the model's action rule, one event at a time.

Why here and this small: the webhook hook runs in the receiver's request thread, so it only applies
the action rule (``ActionRule.action_of``, the per-event twin of ``build_actions``) and keeps four
fields of each action; everything else (times, duplicates, streams) is done by the engine thread.
Rows come from the receiver (``collect.intake``: the rows it just stored) or from JSON lines read back
(``rows_of_lines``: the receiver's files or an API-server log, parsed by the cleaner's own fast path).
A request logged at several stages counts once, at its first record (``RecentIds``): the earliest moment
the runtime could know of it.
"""

from __future__ import annotations

import datetime as dt
from collections import deque
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import msgspec
import orjson

from perfspec.actions.presets import ActionRule
from perfspec.audit.fastpath import EVENT_DECODER, event_row_of
from perfspec.audit.readers import NotAnEvent, Row, event_row
from perfspec.audit.schema import EVENT_COLUMNS

_AUDIT_ID = EVENT_COLUMNS.index("audit_id")
_RECEIVED = EVENT_COLUMNS.index("request_received_at")
_VERB = EVENT_COLUMNS.index("verb")
_USER = EVENT_COLUMNS.index("username")
_RESOURCE = EVENT_COLUMNS.index("resource")
_SUBRESOURCE = EVENT_COLUMNS.index("subresource")


class LiveAction(NamedTuple):
    """What the engine thread needs of one event that is an action."""

    audit_id: str | None
    received: str | None  # the request time as the API server wrote it (RFC 3339)
    username: str | None
    action: str


def actions_of(rows: Iterable[Row], rule: ActionRule) -> tuple[list[LiveAction], int]:
    """The actions among ``rows`` (in order) and how many rows there were."""
    found: list[LiveAction] = []
    count = 0
    action_of = rule.action_of
    for row in rows:
        count += 1
        action = action_of(row[_VERB], row[_RESOURCE], row[_SUBRESOURCE])
        if action is not None:
            found.append(LiveAction(row[_AUDIT_ID], row[_RECEIVED], row[_USER], action))
    return found, count


def rows_of_lines(lines: Sequence[bytes]) -> tuple[list[Row], int]:
    """Rows of JSON-lines audit events (the cleaner's fast path, its slow path as a fallback) and how
    many lines were not events."""
    rows: list[Row] = []
    bad = 0
    for line in lines:
        if not line.strip():
            continue
        try:
            rows.append(event_row_of(EVENT_DECODER.decode(line)))
            continue
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
            pass
        try:
            rows.append(event_row(orjson.loads(line)))
        except (orjson.JSONDecodeError, NotAnEvent, RecursionError, TypeError, AttributeError):
            bad += 1
    return rows, bad


class RecentIds:
    """The last ``capacity`` audit IDs seen: ``seen(id)`` is True for a later stage of a known request."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._order: deque[str] = deque()
        self._ids: set[str] = set()

    def seen(self, audit_id: str | None) -> bool:
        if audit_id is None:
            return False
        if audit_id in self._ids:
            return True
        self._ids.add(audit_id)
        self._order.append(audit_id)
        if len(self._order) > self.capacity:
            self._ids.discard(self._order.popleft())
        return False


_EPOCH_OF_SECOND: dict[str, float] = {}


def epoch_seconds(text: str | None) -> float | None:
    """Seconds since the epoch of an RFC 3339 time (``2024-05-01T10:00:00.123456789Z``); None if it is
    not one. The whole-second part is cached: events of one second share it, so this is a dict look-up
    and a float conversion for nearly every event."""
    if not text or len(text) < 20:
        return None
    second, fraction = text[:19], text[19:]
    base = _EPOCH_OF_SECOND.get(second)
    if base is None:
        try:
            parsed = dt.datetime.fromisoformat(second).replace(tzinfo=dt.UTC)
        except ValueError:
            return None
        if len(_EPOCH_OF_SECOND) > 4096:
            _EPOCH_OF_SECOND.clear()
        base = _EPOCH_OF_SECOND[second] = parsed.timestamp()
    if fraction in ("Z", "z", "+00:00"):
        return base
    if fraction[:1] == "." and fraction[-1:] in ("Z", "z"):
        digits = fraction[1:-1]
        if digits.isdigit():
            return base + int(digits[:6].ljust(6, "0")) / 1e6
    try:  # another offset: the general parser
        return dt.datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None
