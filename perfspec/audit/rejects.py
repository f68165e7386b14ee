"""``rejects.jsonl``: every record that could not be read, with where it was and why.

Why redaction here: a rejected line is usually still a real audit event, and at RequestResponse level
it carries request/response bodies (a Secret's ``data``). The raw text kept for a reject has those
bodies removed first, then is truncated, so no secret ever reaches an output file.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, BinaryIO

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


def redact_text(text: str) -> str:
    """Text without bodies: re-serialised without body keys if it parses, else cut before the first one."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        cut = min((i for i in (text.find(m) for m in _BODY_MARKERS) if i >= 0), default=-1)
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


class RejectWriter:
    """Appends reject records to an open file as they are found (memory stays flat)."""

    def __init__(self, handle: BinaryIO, raw_max_chars: int) -> None:
        self._handle = handle
        self._raw_max_chars = raw_max_chars
        self.count = 0
        self.reasons: Counter[str] = Counter()
        self.first: dict[str, Any] | None = None

    def append_record(self, record: dict[str, Any]) -> None:
        """Copy a record another writer already made (a parallel worker's), e.g. with its line fixed."""
        self._handle.write(orjson.dumps(record) + b"\n")
        self.count += 1
        self.reasons[record["reason"]] += 1
        if self.first is None:
            self.first = record

    def add(self, file: str, line: int, reason: str, raw: bytes | str | Any, detail: str = "") -> None:
        """Record one reject. ``reason`` is a short code; ``detail`` says what exactly was wrong."""
        record = {
            "file": file,
            "line": line,
            "reason": reason,
            "detail": detail,
            "raw": redact_raw(raw, self._raw_max_chars),
        }
        self._handle.write(orjson.dumps(record) + b"\n")
        if self.first is None:
            self.first = record
        self.count += 1
        self.reasons[reason] += 1


def read_rejects(path: Path) -> list[dict[str, Any]]:
    """All reject records of a ``rejects.jsonl`` (for tests and reports; files are small)."""
    with open(path, "rb") as handle:
        return [orjson.loads(line) for line in handle if line.strip()]
