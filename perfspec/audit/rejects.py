"""``rejects.jsonl``: every record that could not be read, with where it was and why.

A rejected line is usually still a real audit event, and at RequestResponse level it carries
request/response bodies (a Secret's ``data``): the raw text kept for a reject is redacted first
(``audit.redaction``), then truncated, so no secret ever reaches an output file.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from perfspec.audit.redaction import redact_raw


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
