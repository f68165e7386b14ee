"""``perfspec live --follow``: audit events read back from files, for a predictor beside the intake.

Why two followers: the API server's own log file (log backend) is renamed when it rotates, which
``collect.tailer.LogTailer`` already follows (by inode, resuming from its state file); the receiver's
folder holds numbered ``audit-NNNNNN.jsonl`` files that are only ever appended to, and a file is final
once a higher-numbered one exists (``collect.sink``: a new file after rotation or a restart). Both save
where they are after every batch, so a restarted predictor neither skips nor repeats events. A torn
last line of a final receiver file was never acknowledged: it is skipped (counted), not predicted.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any, Protocol

import orjson

from perfspec.fileio import write_json_atomic

CHUNK = 4 * 1024 * 1024
_NUMBERED = re.compile(r"^audit-(\d+)\.jsonl$")


class Follower(Protocol):
    def poll(self) -> int: ...

    def close(self) -> None: ...


class Consumer(Protocol):
    def submit_lines(self, lines: list[bytes]) -> str: ...


class FolderFollower:
    """Follows ``<folder>/audit-NNNNNN.jsonl`` (the receiver's files) in number order."""

    def __init__(self, folder: Path, state_path: Path, consumer: Consumer) -> None:
        self.folder = Path(folder)
        self.state_path = Path(state_path)
        self.consumer = consumer
        self.current: str | None = None
        self.offset = 0
        self.counts = {"lines": 0, "files": 0, "torn_lines": 0}
        if self.state_path.is_file():
            state = orjson.loads(self.state_path.read_bytes())
            self.current, self.offset = state.get("file"), int(state.get("offset", 0))

    def _numbered(self) -> list[tuple[int, str]]:
        found = []
        for path in self.folder.glob("audit-*.jsonl"):
            match = _NUMBERED.match(path.name)
            if match:
                found.append((int(match.group(1)), path.name))
        return sorted(found)

    def poll(self) -> int:
        """Hand every new complete line to the consumer; returns how many."""
        before = self.counts["lines"]
        while True:
            files = self._numbered()  # listed before reading: a later file means this one was final
            if not files:
                return 0
            if self.current is None:
                self.current, self.offset = files[-1][1], 0  # a fresh start: the file being written
                self.counts["files"] += 1
            match = _NUMBERED.match(self.current)
            number = int(match.group(1)) if match else -1
            self._read(self.folder / self.current)
            later = [name for n, name in files if n > number]
            if not later:
                return self.counts["lines"] - before
            torn = self._rest(self.folder / self.current)
            self.counts["torn_lines"] += int(torn > 0)
            self.current, self.offset = later[0], 0
            self.counts["files"] += 1
            self._save()

    def _read(self, path: Path) -> None:
        try:
            handle = open(path, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            return
        with handle:
            while True:
                handle.seek(self.offset)
                data = handle.read(CHUNK)
                cut = data.rfind(b"\n")
                if cut < 0:
                    return
                lines = data[:cut].split(b"\n")
                self.offset += cut + 1
                self.consumer.submit_lines(lines)
                self.counts["lines"] += len(lines)
                self._save()
                if len(data) < CHUNK:
                    return

    def _rest(self, path: Path) -> int:
        try:
            return max(path.stat().st_size - self.offset, 0)
        except FileNotFoundError:
            return 0

    def _save(self) -> None:
        write_json_atomic(
            self.state_path, {"folder": str(self.folder), "file": self.current, "offset": self.offset}
        )

    def close(self) -> None:
        pass

    def stats(self) -> dict[str, Any]:
        return {**self.counts, "file": self.current, "offset": self.offset}


def make_follower(target: Path, state_dir: Path, consumer: Any) -> Follower:
    """A folder: the receiver's files; a file: an API-server log (``LogTailer``, bodies never kept)."""
    from perfspec.collect.tailer import LogTailer

    target = Path(target)
    if target.is_dir():
        return FolderFollower(target, state_dir / "follow-folder-state.json", consumer)
    return LogTailer(target, state_dir / "follow-file-state.json", consumer)


def follow(follower: Follower, stop: threading.Event, interval: float) -> None:
    """Poll until ``stop``, then once more (what arrived meanwhile)."""
    while not stop.is_set():
        follower.poll()
        stop.wait(interval)
    follower.poll()
