"""Follow the API server's audit log file (log backend) into the same rotated JSON-lines files.

Why: without a webhook, the API server writes ``--audit-log-path`` and rotates it itself (lumberjack:
rename to a timestamped name, open a new file). The tailer copies complete lines into a
:class:`JsonlSink` and remembers ``(device, inode, offset)`` in a state file written after every
batch, so:
- rotation (rename): the old file is drained to its end (via the still-open handle, or found again by
  inode after a restart) before the new one is read from 0 -> no loss, no duplicate; while it drains,
  the state keeps the old file's ``(device, inode)``, so a restart mid-drain finds it and goes on;
- truncation in place (copytruncate): detected by the size dropping below the offset; reading starts
  again at 0 (lines written between the last poll and the truncation exist only in the copy: use
  rename rotation, which the API server does);
- a partial last line is left for the next poll; it is emitted as-is only when its file was rotated;
- a crash between the sink's fsync and the state write re-copies that one batch (at-least-once there;
  the cleaner drops duplicate events);
- request/response bodies are stripped by default like the receiver does (``drop_bodies``; Secrets at
  the RequestResponse level), see :mod:`perfspec.audit.redaction`.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from perfspec.audit.redaction import strip_line_bodies
from perfspec.fileio import write_json_atomic

CHUNK = 8 * 1024 * 1024


class LineSink(Protocol):
    """Where copied lines go: a :class:`JsonlSink`, or the live predictor (``perfspec live --follow``)."""

    def write_batch(self, lines: Sequence[bytes]) -> str: ...


class LogTailer:
    """Poll-based follower of one audit log path; ``poll()`` copies what is new, ``follow()`` loops."""

    def __init__(self, path: Path, state_path: Path, sink: LineSink, drop_bodies: bool = True) -> None:
        self.path = Path(path)
        self.state_path = Path(state_path)
        self.sink = sink
        self.drop_bodies = drop_bodies
        self._handle: BinaryIO | None = None
        self._ident: tuple[int, int] | None = None
        self.offset = 0
        self.counts = {
            "lines": 0,
            "batches": 0,
            "rotations": 0,
            "truncations": 0,
            "recovered_rotations": 0,
            "bodies_dropped": 0,
        }
        self._restore()

    def _restore(self) -> None:
        if not self.state_path.is_file():
            return
        state = json.loads(self.state_path.read_text())
        saved = (int(state["dev"]), int(state["ino"]))
        offset = int(state["offset"])
        try:
            st = self.path.stat()
        except FileNotFoundError:
            st = None
        if st is not None and (st.st_dev, st.st_ino) == saved:
            self._open(offset)
            return
        rotated = self._find_by_inode(saved)  # rotated while we were not running
        if rotated is not None:
            with open(rotated, "rb") as handle:
                self._drain(handle, offset, final=True, ident=saved)
            self.counts["recovered_rotations"] += 1
        self._save(None, 0)

    def _find_by_inode(self, ident: tuple[int, int]) -> Path | None:
        for entry in os.scandir(self.path.parent):
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if (st.st_dev, st.st_ino) == ident and entry.is_file():
                return Path(entry.path)
        return None

    def _open(self, offset: int = 0) -> BinaryIO | None:
        """Open the live file as ``self._handle``; returns it, or None when the file is not there."""
        try:
            handle = open(self.path, "rb")  # noqa: SIM115 - kept open to drain after a rotation
        except FileNotFoundError:
            return None
        st = os.fstat(handle.fileno())
        self._handle, self._ident = handle, (st.st_dev, st.st_ino)
        self.offset = offset if offset <= st.st_size else 0
        if offset > st.st_size:
            self.counts["truncations"] += 1
        return handle

    def _save(self, ident: tuple[int, int] | None, offset: int) -> None:
        dev, ino = ident or (0, 0)
        write_json_atomic(self.state_path, {"path": str(self.path), "dev": dev, "ino": ino, "offset": offset})

    def _emit(self, lines: list[bytes], ident: tuple[int, int] | None, offset: int) -> None:
        lines = [line.rstrip(b"\r") for line in lines if line.strip()]
        if self.drop_bodies:
            stripped = [strip_line_bodies(line) for line in lines]
            lines = [line for line, _ in stripped]
            self.counts["bodies_dropped"] += sum(n for _, n in stripped)
        if lines:
            self.sink.write_batch(lines)
            self.counts["lines"] += len(lines)
            self.counts["batches"] += 1
        self._save(ident, offset)

    def _drain(self, handle: BinaryIO, offset: int, final: bool, ident: tuple[int, int] | None) -> int:
        """Copy complete lines from ``offset``; with ``final`` (a rotated file) also a trailing partial
        line. The state saved after each batch names ``ident``, the file being read. New offset."""
        while True:
            handle.seek(offset)
            data = handle.read(CHUNK)
            while len(data) >= CHUNK and b"\n" not in data:  # one very long line
                more = handle.read(CHUNK)
                if not more:
                    break
                data += more
            if not data:
                return offset
            cut = data.rfind(b"\n")
            if cut < 0:
                if final:
                    self._emit([data], ident, offset + len(data))
                    return offset + len(data)
                return offset
            offset += cut + 1
            self._emit(data[:cut].split(b"\n"), ident, offset)

    def poll(self) -> int:
        """Copy every complete new line (following a rotation or truncation); returns lines copied."""
        before = self.counts["lines"]
        handle = self._handle if self._handle is not None else self._open(0)
        if handle is None:
            return 0
        self.offset = self._drain(handle, self.offset, final=False, ident=self._ident)
        try:
            st = self.path.stat()
        except FileNotFoundError:
            st = None
        if st is None or (st.st_dev, st.st_ino) != self._ident:
            self.offset = self._drain(handle, self.offset, final=True, ident=self._ident)
            handle.close()
            self._handle, self._ident = None, None
            self.counts["rotations"] += 1
            self._save(None, 0)
            if st is not None and (reopened := self._open(0)) is not None:
                self.offset = self._drain(reopened, 0, final=False, ident=self._ident)
        elif st.st_size < self.offset:
            self.counts["truncations"] += 1
            self.offset = self._drain(handle, 0, final=False, ident=self._ident)
        return self.counts["lines"] - before

    def follow(self, stop: threading.Event, interval: float = 0.5) -> None:
        while not stop.is_set():
            self.poll()
            stop.wait(interval)
        self.poll()

    def stats(self) -> dict[str, Any]:
        return {**self.counts, "offset": self.offset, "path": str(self.path)}

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
