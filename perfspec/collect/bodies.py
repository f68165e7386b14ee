"""Dropping request/response bodies from audit log lines before they are stored.

Why: at the RequestResponse audit level an event carries ``requestObject``/``responseObject`` (a
Secret's ``data`` among them), and nothing downstream reads them. The webhook receiver drops them from
the events it parses anyway (``receiver.event_line``); the log-file tailer copies lines, so it uses
:func:`strip_line_bodies`, which re-serialises only the lines that hold a body field.
"""

from __future__ import annotations

from typing import Any

import orjson

from perfspec.audit.rejects import EVENT_BODY_FIELDS, redact_text

_MARKERS = tuple(f'"{key}"'.encode() for key in EVENT_BODY_FIELDS)


def _drop(value: Any) -> int:
    """Remove body fields from an Event, or from each Event of an EventList / array; count removed."""
    if isinstance(value, dict):
        if value.get("kind") == "EventList" and isinstance(value.get("items"), list):
            return sum(_drop(item) for item in value["items"])
        present = [key for key in EVENT_BODY_FIELDS if key in value]
        for key in present:
            del value[key]
        return len(present)
    if isinstance(value, list):
        return sum(_drop(item) for item in value if isinstance(item, dict))
    return 0


def strip_line_bodies(line: bytes) -> tuple[bytes, int]:
    """``line`` without body fields, and how many were removed. Lines without one are returned as is;
    a line that is not JSON (a torn last line) is cut before its first body or secret key."""
    if not any(marker in line for marker in _MARKERS):
        return line, 0
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        text = line.decode("utf-8", "replace")
        redacted = redact_text(text)
        return redacted.encode(), int(redacted != text)
    removed = _drop(value)
    return (orjson.dumps(value), removed) if removed else (line, 0)
