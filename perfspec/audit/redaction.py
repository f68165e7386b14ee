"""Keeping secrets out of every file perfspec writes: bodies and secret payloads removed.

Why here, in one module: at the RequestResponse audit level an event carries ``requestObject`` /
``responseObject`` (a Secret's ``data`` among them), and nothing downstream reads them. The cleaner's
rejects, the receiver's rejects and stored events, and the log tailer's copies all go through these
functions, so there is one list of what counts as a body and one way of removing it.
"""

from __future__ import annotations

from typing import Any

import orjson

#: An audit Event's body fields (present only at the RequestResponse level): what the receiver and the
#: tailer strip from events they store, and the first of the keys below.
EVENT_BODY_FIELDS = ("requestObject", "responseObject")
#: Keys whose values are bodies or secret payloads; removed from any reject's raw text.
BODY_KEYS = frozenset({*EVENT_BODY_FIELDS, "data", "stringData", "binaryData"})
_BODY_MARKERS = tuple(f'"{key}"' for key in sorted(BODY_KEYS)) + tuple(
    f'\\"{key}\\"' for key in sorted(BODY_KEYS)
)
REDACTED = "<redacted>"


def _redact_value(value: Any, depth: int = 0) -> Any:
    if depth > 64:
        return REDACTED
    if isinstance(value, dict):
        return {k: REDACTED if k in BODY_KEYS else _redact_value(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_value(v, depth + 1) for v in value]
    if isinstance(value, str) and any(marker in value for marker in _BODY_MARKERS):
        return REDACTED  # e.g. a last-applied-configuration annotation embedding a Secret
    return value


#: In text that does not parse, a ``\u`` escape could spell a body key (``"requestOb\u006aect"``)
#: that the markers miss: the text is cut there too.
_ESCAPE = "\\u"


def redact_text(text: str) -> str:
    """Text without bodies: re-serialised without body keys if it parses, else cut before the first
    body key or unicode escape."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        found = (text.find(marker) for marker in (*_BODY_MARKERS, _ESCAPE))
        cut = min((i for i in found if i >= 0), default=-1)
        return text if cut < 0 else text[:cut] + f"{REDACTED}…"
    return orjson.dumps(_redact_value(value)).decode()


def redact_raw(raw: bytes | str | Any, max_chars: int) -> str:
    """What a reject record stores as ``raw``: bodies removed, then truncated to ``max_chars``."""
    if isinstance(raw, bytes):
        text = raw.decode("utf-8", "replace")
    elif isinstance(raw, str):
        text = raw
    else:
        text = orjson.dumps(_redact_value(raw), default=str).decode()
        return text if len(text) <= max_chars else text[:max_chars] + "…"
    text = redact_text(text)
    return text if len(text) <= max_chars else text[:max_chars] + "…"


_LINE_MARKERS = tuple(f'"{key}"'.encode() for key in EVENT_BODY_FIELDS)


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
    if not any(marker in line for marker in _LINE_MARKERS):
        return line, 0
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        text = line.decode("utf-8", "replace")
        redacted = redact_text(text)
        return redacted.encode(), int(redacted != text)
    removed = _drop(value)
    return (orjson.dumps(value), removed) if removed else (line, 0)
