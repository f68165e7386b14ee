"""The log-file follower with real files: growth, partial lines, rename rotation, truncation, restart."""

from __future__ import annotations

import os
from pathlib import Path

from perfspec.collect.sink import JsonlSink
from perfspec.collect.tailer import LogTailer
from tests.collect.conftest import read_jsonl


def line(n: int) -> bytes:
    return b'{"kind":"Event","auditID":"id-%d","stage":"ResponseComplete"}\n' % n


def ids(out: Path) -> list[str]:
    return [e["auditID"] for e in read_jsonl(out)]


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as handle:
        handle.write(data)


def test_growth_partial_lines_rotation_and_truncation(tmp_path: Path) -> None:
    log, out = tmp_path / "audit.log", tmp_path / "out"
    sink = JsonlSink(out, rotate_bytes=10_000)
    tailer = LogTailer(log, out / "tail-state.json", sink)
    assert tailer.poll() == 0  # no file yet: wait, no error
    append(log, line(1) + line(2) + line(3)[:20])  # last line still being written
    assert tailer.poll() == 2
    append(log, line(3)[20:] + line(4))
    assert tailer.poll() == 2
    # rename rotation (what the API server's lumberjack does), with lines written just before it
    append(log, line(5))
    os.rename(log, tmp_path / "audit-2024-01-01T00-00-00.000.log")
    append(log, line(6))
    assert tailer.poll() == 2 and tailer.counts["rotations"] == 1
    # truncation in place
    append(log, line(7))
    assert tailer.poll() == 1
    with open(log, "wb") as handle:
        handle.write(line(8))
    assert tailer.poll() == 1 and tailer.counts["truncations"] == 1
    sink.close()
    assert ids(out) == [f"id-{n}" for n in range(1, 9)]


def test_restart_resumes_from_saved_offset_even_after_a_rotation(tmp_path: Path) -> None:
    log, out = tmp_path / "audit.log", tmp_path / "out"
    append(log, line(1) + line(2))
    sink = JsonlSink(out, rotate_bytes=10_000)
    first = LogTailer(log, out / "tail-state.json", sink)
    assert first.poll() == 2
    first.close()
    sink.close()
    # while no tailer runs: more lines, then a rotation, then lines in the new file
    append(log, line(3) + line(4))
    os.rename(log, tmp_path / "audit-old.log")
    append(log, line(5))
    sink = JsonlSink(out, rotate_bytes=10_000)
    second = LogTailer(log, out / "tail-state.json", sink)
    assert second.counts["recovered_rotations"] == 1
    second.poll()
    append(log, line(6))
    second.poll()
    second.close()
    sink.close()
    # a third start without changes copies nothing again
    sink = JsonlSink(out, rotate_bytes=10_000)
    third = LogTailer(log, out / "tail-state.json", sink)
    assert third.poll() == 0
    sink.close()
    assert ids(out) == [f"id-{n}" for n in range(1, 7)]
    assert sorted(p.name for p in out.glob("audit-*.jsonl")) == ["audit-000001.jsonl", "audit-000002.jsonl"]


def test_long_backlog_and_blank_lines(tmp_path: Path) -> None:
    log, out = tmp_path / "audit.log", tmp_path / "out"
    append(log, b"".join(line(n) + (b"\n" if n % 100 == 0 else b"") for n in range(5000)))
    sink = JsonlSink(out, rotate_bytes=50_000)
    tailer = LogTailer(log, out / "tail-state.json", sink)
    assert tailer.poll() == 5000
    sink.close()
    assert ids(out) == [f"id-{n}" for n in range(5000)]
    assert len(list(out.glob("audit-*.jsonl"))) == 1  # one poll = one batch; batches never split
