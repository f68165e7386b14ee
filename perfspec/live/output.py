"""Where prediction records go: bounded drop-oldest buffers, each drained by its own writer thread.

Why drop the oldest: the engine thread must never wait for a consumer (a slow disk, a stdout piped into a
stalled program), or ingestion would back up behind it. Each output has its own buffer of at most
``capacity`` records; when it is full the oldest record is dropped and counted (``dropped``), since the
newest prediction is the one still useful. Events are never dropped here: they were persisted before
any record existed. Files rotate (``<prefix>-NNNNNN.jsonl``) and only the last ``keep_files`` are kept,
so the disk use is bounded too. A writer wakes at most every ``interval`` seconds (50 ms) and writes
what gathered meanwhile in one call: one wake-up per record would compete with the engine thread for
the interpreter at thousands of records a second.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, Generic, TypeVar

from perfspec.collect.sink import next_number

T = TypeVar("T")


class DropOldest(Generic[T]):
    """A bounded FIFO whose ``put`` never blocks: at capacity the oldest item makes room (counted)."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.dropped = 0
        self.put_count = 0
        self._items: deque[T] = deque()
        self._cond = threading.Condition()
        self._closed = False

    def put(self, item: T) -> None:
        with self._cond:
            if len(self._items) >= self.capacity:
                self._items.popleft()
                self.dropped += 1
            self._items.append(item)
            self.put_count += 1
            self._cond.notify()

    def take(self, timeout: float | None = None) -> list[T]:
        """Everything buffered (waits up to ``timeout`` for something); [] once closed and empty."""
        with self._cond:
            if not self._items and not self._closed:
                self._cond.wait(timeout)
            items = list(self._items)
            self._items.clear()
            return items

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        return len(self._items)


class RotatingFiles:
    """Appends to ``<folder>/<prefix>-NNNNNN.jsonl``; a new file past ``rotate_bytes``, the oldest deleted
    beyond ``keep_files``. A restart continues the numbering (never appends to an old file)."""

    def __init__(self, folder: Path, prefix: str, rotate_bytes: int, keep_files: int) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.prefix = prefix
        self.rotate_bytes = rotate_bytes
        self.keep_files = keep_files
        self._number = next_number(self.folder, prefix)
        self._handle: BinaryIO | None = None
        self._size = 0

    @property
    def current(self) -> Path:
        return self.folder / f"{self.prefix}-{self._number:06d}.jsonl"

    def write(self, data: bytes) -> None:
        if self._handle is None:
            self._handle = open(self.current, "ab")  # noqa: SIM115 - kept open across batches
            self._size = 0
            self._prune()
        self._handle.write(data)
        self._handle.flush()
        self._size += len(data)
        if self._size >= self.rotate_bytes:
            self._handle.close()
            self._handle = None
            self._number += 1

    def _prune(self) -> None:
        files = sorted(self.folder.glob(f"{self.prefix}-*.jsonl"))
        for old in files[: max(len(files) - self.keep_files, 0)]:
            with contextlib.suppress(OSError):
                old.unlink()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


class StdoutLines:
    """Writes to the process' stdout (a closed pipe ends this output, never the service)."""

    def __init__(self, stream: BinaryIO | None = None) -> None:
        self.stream = stream or sys.stdout.buffer

    def write(self, data: bytes) -> None:
        self.stream.write(data)
        self.stream.flush()

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.stream.flush()


class Output:
    """One consumer of records (bytes, one JSON line each): a drop-oldest buffer and a writer thread."""

    def __init__(
        self,
        name: str,
        target: RotatingFiles | StdoutLines,
        capacity: int,
        log: Callable[[str], None] = print,
        interval: float = 0.05,
    ) -> None:
        self.name = name
        self.target = target
        self.buffer: DropOldest[bytes] = DropOldest(capacity)
        self.written = 0
        self.failed = False
        self.log = log
        self.interval = interval
        self._thread = threading.Thread(target=self._run, name=f"perfspec-live-{name}", daemon=True)
        self._thread.start()

    def put(self, line: bytes) -> None:
        if not self.failed:
            self.buffer.put(line)

    @property
    def dropped(self) -> int:
        return self.buffer.dropped

    def _run(self) -> None:
        while True:
            lines = self.buffer.take(timeout=0.5)
            if lines and not self.failed:
                try:
                    self.target.write(b"".join(lines))
                    self.written += len(lines)
                except (OSError, ValueError) as error:
                    self.failed = True  # e.g. stdout closed: stop writing, keep predicting
                    self.log(f"output {self.name} stopped: {error}")
                if not self.buffer.closed:
                    time.sleep(self.interval)  # let records gather: one write for many
            elif self.buffer.closed and not len(self.buffer):
                return

    def close(self, timeout: float = 10.0) -> None:
        """Write what is buffered, then stop."""
        self.buffer.close()
        self._thread.join(timeout)
        if not self._thread.is_alive():  # a writer stuck on a full pipe keeps its target: never block exit
            with contextlib.suppress(OSError, ValueError):
                self.target.close()
