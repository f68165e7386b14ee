"""The log-file follower with real files: growth, partial lines, rename rotation, truncation, restart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import perfspec.collect.tailer as tailer_module
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
    log.rename(tmp_path / "audit-2024-01-01T00-00-00.000.log")
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
    log.rename(tmp_path / "audit-old.log")
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


def test_a_crash_while_draining_a_rotated_file_resumes_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tailer_module, "CHUNK", 256)  # many batches per drain, as with > 8 MB left
    log, out, state = tmp_path / "audit.log", tmp_path / "out", tmp_path / "out" / "tail-state.json"
    append(log, line(1) + line(2))
    sink = JsonlSink(out, rotate_bytes=1_000_000)
    first = LogTailer(log, state, sink)
    assert first.poll() == 2
    old_ident = (log.stat().st_dev, log.stat().st_ino)
    append(log, b"".join(line(n) for n in range(3, 60)))
    log.rename(tmp_path / "audit-rotated.log")
    append(log, line(60))
    writes = 0
    real_write = sink.write_batch

    def dying_write(lines: list[bytes]) -> str:  # the process dies in the middle of the old file
        nonlocal writes
        writes += 1
        if writes == 4:
            raise KeyboardInterrupt
        return real_write(lines)

    monkeypatch.setattr(sink, "write_batch", dying_write)
    with pytest.raises(KeyboardInterrupt):
        first.poll()
    saved = json.loads(state.read_text())
    assert (saved["dev"], saved["ino"]) == old_ident and saved["offset"] > 2 * len(line(1))
    first.close()
    sink.close()
    sink = JsonlSink(out, rotate_bytes=1_000_000)
    second = LogTailer(log, state, sink)  # restart: finds the rotated file by inode, drains the rest
    assert second.counts["recovered_rotations"] == 1
    second.poll()
    sink.close()
    assert ids(out) == [f"id-{n}" for n in range(1, 61)]


def test_bodies_are_stripped_by_default_and_kept_on_request(tmp_path: Path) -> None:
    secret = {"kind": "Secret", "apiVersion": "v1", "data": {"password": "SUPERSECRET"}}
    event = {"kind": "Event", "auditID": "b1", "stage": "ResponseComplete", "level": "RequestResponse"}
    with_body = json.dumps({**event, "requestObject": secret, "responseObject": secret}).encode()
    torn = json.dumps({**event, "auditID": "b2", "requestObject": secret}).encode()[:-20]
    for drop in (True, False):
        root = tmp_path / str(drop)
        root.mkdir()
        log, out = root / "audit.log", root / "out"
        sink = JsonlSink(out, rotate_bytes=1_000_000)
        tailer = LogTailer(log, out / "tail-state.json", sink, drop_bodies=drop)
        append(log, line(1) + with_body + b"\n" + torn)
        assert tailer.poll() == 2
        log.rename(root / "audit-old.log")  # the torn last line is emitted when its file rotates
        append(log, line(2))
        assert tailer.poll() == 2
        sink.close()
        data = b"".join(p.read_bytes() for p in sorted(out.glob("audit-*.jsonl")))
        rows = data.splitlines()
        assert len(rows) == 4 and json.loads(rows[3]) == json.loads(line(2))
        assert (b"SUPERSECRET" in data) is not drop
        if drop:
            assert json.loads(rows[1]) == event and tailer.counts["bodies_dropped"] == 3
            assert b"requestObject" not in rows[2] and rows[2].startswith(b'{"kind": "Event"')
        else:
            assert rows[1] == with_body and rows[2] == torn and tailer.counts["bodies_dropped"] == 0
