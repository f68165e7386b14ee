"""Small file helpers shared by every layer: atomic writes and content hashes.

Why: a crashed or interrupted run must never leave a half-written output that a later step (or a
Prefect cache) mistakes for a finished one. Everything is written to a temp file in the same
directory and renamed into place.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, Literal

#: The modes ``atomic_open`` accepts: binary, writing from an empty temp file.
BinaryWriteMode = Literal["wb", "w+b"]


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(target: Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temp path next to ``target``; rename it onto ``target`` only if the block succeeds.

    ``suffix`` ends the temp name, for writers that insist on an extension (Keras wants ``.keras``).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp creates 0600 files; outputs get the usual umask-derived mode like any open() would.
        tmp.chmod(0o666 & ~_current_umask())
        tmp.replace(target)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_open(target: Path, mode: BinaryWriteMode = "wb") -> Iterator[BinaryIO]:
    """Open a temp file for writing; it replaces ``target`` (fsync'd) when the block succeeds."""
    with atomic_path(target) as tmp, open(tmp, mode) as handle:
        yield handle
        handle.flush()
        os.fsync(handle.fileno())


def write_json_atomic(target: Path, payload: Any) -> None:
    """Write JSON with sorted keys (stable bytes for identical content) atomically."""
    data = json.dumps(payload, indent=2, sort_keys=True, default=str).encode() + b"\n"
    with atomic_open(target, "wb") as handle:
        handle.write(data)


def write_text_atomic(target: Path, text: str) -> None:
    with atomic_open(target, "wb") as handle:
        handle.write(text.encode())


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    """Content hash used for lineage and Prefect cache keys (never hash DataFrames)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_files(paths: list[Path]) -> str:
    """One hash over several files, order-sensitive (names excluded: same bytes, same hash)."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(sha256_file(path).encode())
    return digest.hexdigest()


def ensure_writable_dir(folder: Path) -> None:
    """Create ``folder`` and write (and fsync) an anonymous file in it, so a folder that cannot take
    outputs fails now, before long work, rather than at its first write. Raises OSError."""
    Path(folder).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=folder) as probe:
        probe.write(b"ok")
        probe.flush()
        os.fsync(probe.fileno())
