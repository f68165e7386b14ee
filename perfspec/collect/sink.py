"""Durable JSON-lines output for received audit events: size-rotated files, fsync'd per batch.

Why: the webhook receiver answers 200 only after ``write_batch`` returns, so a batch it acknowledged
is on disk (file data fsync'd, and the directory fsync'd when a file is created) even if the machine
loses power right after. A batch is never split across files. A restart never appends to an old file
(whose tail might be a torn, unacknowledged write): it continues the numbering with a new file.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

_NUMBERED = re.compile(r"^(?P<prefix>.+)-(?P<n>\d+)\.jsonl$")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def next_number(out_dir: Path, prefix: str) -> int:
    """1 + the highest ``<prefix>-<n>.jsonl`` already in ``out_dir`` (1 when none)."""
    numbers = [
        int(m["n"])
        for p in Path(out_dir).glob(f"{prefix}-*.jsonl")
        if (m := _NUMBERED.match(p.name)) and m["prefix"] == prefix
    ]
    return max(numbers, default=0) + 1


class JsonlSink:
    """Thread-safe writer of ``<out_dir>/<prefix>-NNNNNN.jsonl`` files rotated at ``rotate_bytes``."""

    def __init__(self, out_dir: Path, rotate_bytes: int, prefix: str = "audit") -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.rotate_bytes = rotate_bytes
        self.prefix = prefix
        self._lock = threading.Lock()
        self._number = next_number(self.out_dir, prefix)
        self._handle: BinaryIO | None = None
        self._size = 0
        self.files_written: list[str] = []

    @property
    def current_name(self) -> str:
        return f"{self.prefix}-{self._number:06d}.jsonl"

    def _open(self) -> BinaryIO:
        if self._handle is None:
            path = self.out_dir / self.current_name
            self._handle = open(path, "xb")  # noqa: SIM115 - kept open across batches, closed on rotate
            self._size = 0
            _fsync_dir(self.out_dir)
            self.files_written.append(path.name)
        return self._handle

    def write_batch(self, lines: Sequence[bytes]) -> str:
        """Append ``lines`` (each without newline) durably; returns the file name they went to."""
        if not lines:
            return self.current_name
        data = b"".join(line + b"\n" for line in lines)
        with self._lock:
            handle = self._open()
            name = self.current_name
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
            self._size += len(data)
            if self._size >= self.rotate_bytes:
                handle.close()
                self._handle = None
                self._number += 1
            return name

    def close(self) -> None:
        with self._lock:
            if self._handle is not None:
                self._handle.flush()
                os.fsync(self._handle.fileno())
                self._handle.close()
                self._handle = None
