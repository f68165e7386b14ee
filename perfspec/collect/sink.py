"""Durable JSON-lines output for received audit events: size-rotated files, fsync'd per batch.

Why: the webhook receiver answers 200 only after ``write_batch`` returns, so a batch it acknowledged
is on disk (file data fsync'd, and the directory fsync'd when a file is created) even if the machine
loses power right after. A batch is never split across files. A restart never appends to an old file
(whose tail might be a torn, unacknowledged write): it continues the numbering with a new file.
A write that fails part-way (disk full) is undone before the error is raised: the file is cut back to
its last acknowledged size (or, if even that fails, the next batch starts a new file), so the torn
fragment can never glue itself to the next acknowledged event. Writes go straight to the file
descriptor: no Python buffer keeps half a batch.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import Sequence
from pathlib import Path

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
        self._fd: int | None = None
        self._size = 0
        self.files_written: list[str] = []
        self.undone_writes = 0

    @property
    def current_name(self) -> str:
        return f"{self.prefix}-{self._number:06d}.jsonl"

    def _open(self) -> int:
        if self._fd is None:
            path = self.out_dir / self.current_name
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o644)
            self.files_written.append(path.name)
            self._fd, self._size = fd, 0
            _fsync_dir(self.out_dir)
        return self._fd

    def _next_file(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
        self._fd = None
        self._number += 1

    def write(self, data: bytes | bytearray) -> str:
        """Append ``data`` (whole JSON lines) durably; returns the file name it went to. On an
        OSError nothing of ``data`` stays in the file (see the module docstring), then it is raised."""
        if not data:
            return self.current_name
        with self._lock:
            fd = self._open()
            name = self.current_name
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            except OSError:
                self._undo(fd)
                raise
            self._size += len(data)
            if self._size >= self.rotate_bytes:
                self._next_file()
            return name

    def write_batch(self, lines: Sequence[bytes]) -> str:
        """Append ``lines`` (each without newline) durably, as one write; see :meth:`write`."""
        return self.write(b"".join(line + b"\n" for line in lines))

    def _undo(self, fd: int) -> None:
        """Cut the file back to its last acknowledged size; if that fails, leave it for a new file."""
        self.undone_writes += 1
        try:
            os.ftruncate(fd, self._size)
            os.fsync(fd)
        except OSError:
            self._next_file()

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                try:
                    os.fsync(self._fd)
                finally:
                    os.close(self._fd)
                    self._fd = None
