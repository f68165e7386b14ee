"""The receiver under the attacks of issue 11: torn writes, deep nesting, floods, slow senders, browsers,
and items the cleaner would refuse. Loopback only, real sockets, real files."""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest

from perfspec.audit.clean import clean_sources
from perfspec.collect import sink as sink_module
from perfspec.collect.receiver import REJECTS_NAME, AuditReceiver
from perfspec.collect.sink import JsonlSink
from perfspec.settings import CleanSettings, ReceiverSettings
from tests.collect.conftest import REPO_ROOT, read_jsonl
from tests.test_clean import event

JSON = {"Content-Type": "application/json"}


def item(**extra: Any) -> dict[str, Any]:
    """A Metadata-level audit event as the webhook sends it (no kind/apiVersion inside an EventList)."""
    value = {k: v for k, v in event(str(uuid.uuid4())).items() if k not in ("kind", "apiVersion")}
    return {**value, **extra}


def batch(*items: dict[str, Any]) -> dict[str, Any]:
    return {"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": list(items)}


def cleaned(out: Path, tmp_path: Path) -> tuple[list[str], Any]:
    """The audit IDs ``clean`` keeps from a receiver folder, and its summary."""
    summary = clean_sources([out], tmp_path / "clean", CleanSettings())
    ids = pq.read_table(tmp_path / "clean" / "events.parquet").column("audit_id").to_pylist()
    return ids, summary


# -- 1. a failed write is undone before the next batch -------------------------------------------------
def test_a_write_failing_part_way_is_cut_back_so_the_next_batch_stays_readable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sink = JsonlSink(tmp_path, rotate_bytes=1 << 20)
    first = [json.dumps(item()).encode() for _ in range(2)]
    sink.write_batch(first)
    real_write = os.write

    def disk_full(fd: int, data: Any) -> int:  # half of the batch reaches the file, then ENOSPC
        monkeypatch.setattr(sink_module.os, "write", real_write)
        real_write(fd, bytes(data[: len(data) // 2]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sink_module.os, "write", disk_full)
    with pytest.raises(OSError, match="No space"):
        sink.write_batch([json.dumps(item()).encode() for _ in range(2)])
    third = [json.dumps(item()).encode() for _ in range(2)]
    sink.write_batch(third)
    sink.close()
    lines = (tmp_path / "audit-000001.jsonl").read_bytes().splitlines()
    assert lines == first + third and sink.undone_writes == 1


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir()
    if os.geteuid() != 0:
        return False
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    return done.returncode == 0


@pytest.mark.slow
def test_disk_full_on_a_real_tmpfs_loses_no_acknowledged_event(receiver: Any, tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "256k"):
        pytest.skip("needs root and tmpfs (mount -t tmpfs) to fill a real disk")
    try:
        r = receiver(disk / "out")
        a = batch(*(item() for _ in range(20)))
        assert httpx.post(r.post_url, json=a).status_code == 200
        filler = disk / "filler"
        with open(filler, "wb", buffering=0) as handle, pytest.raises(OSError):
            while True:  # fill the disk to the last byte
                handle.write(b"x" * 512)
        b = batch(*(item() for _ in range(40)))
        refused = httpx.post(r.post_url, json=b)
        assert refused.status_code == 503 and "Retry-After" in refused.headers
        filler.unlink()
        c = batch(*(item() for _ in range(20)))
        assert httpx.post(r.post_url, json=c).status_code == 200
        stats = r.stop()
        assert stats["write_errors"] >= 1 and stats["undone_writes"] >= 1
        ids, summary = cleaned(disk / "out", tmp_path)
        acknowledged = [i["auditID"] for i in a["items"] + c["items"]]
        assert sorted(ids) == sorted(acknowledged) and summary.rejected == 0
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


# -- 2. deep nesting, 3. bounded bodies, 5. reject floods ----------------------------------------------
def nested(depth: int) -> dict[str, Any]:
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    return value


def test_a_deeply_nested_item_is_stored_and_the_batch_kept(receiver: Any, tmp_path: Path) -> None:
    r = receiver()
    deep = item(annotations=nested(300))  # orjson.dumps refuses 255+ levels; the raw copy does not care
    body = batch(item(), deep, item())
    response = httpx.post(r.post_url, json=body)
    assert response.status_code == 200 and response.json()["accepted"] == 3
    marker = json.dumps(batch(item(), item(annotations="DEEP")))
    too_deep = marker.replace(
        '"DEEP"', '{"a":' * 5000 + "1" + "}" * 5000
    ).encode()  # json.dumps stops at ~1000
    refused = httpx.post(r.post_url, content=too_deep, headers=JSON)
    assert refused.status_code == 400 and "nested deeper" in refused.json()["error"]
    r.stop()
    ids, summary = cleaned(tmp_path / "out", tmp_path)
    assert sorted(ids) == sorted(i["auditID"] for i in body["items"]) and summary.rejected == 0


def test_too_many_items_get_413_and_a_reject_flood_is_recorded_once(receiver: Any, tmp_path: Path) -> None:
    r = receiver(max_batch_items=500, max_rejects_per_request=10)
    tiny = json.dumps(batch(*([{}] * 501))).encode()
    too_many = httpx.post(r.post_url, content=tiny, headers=JSON)
    assert too_many.status_code == 413 and "max_batch_items" in too_many.json()["error"]
    flood = batch(*([{"verb": "x"}] * 499), item())
    answer = httpx.post(r.post_url, json=flood)
    assert answer.status_code == 200
    assert answer.json() == {"accepted": 1, "rejected": 499, "rejects_recorded": 10}
    stats = r.stop()
    assert (stats["too_many_items"], stats["rejected_items"], stats["unrecorded_rejects"]) == (1, 499, 489)
    assert len((tmp_path / "out" / REJECTS_NAME).read_text().splitlines()) == 10


# -- 6. browsers, 12. bearer scheme ---------------------------------------------------------------------
def test_only_json_on_the_configured_path_and_no_cors(receiver: Any) -> None:
    r = receiver(token="t")
    auth = {"Authorization": "bearer t"}  # the scheme is case-insensitive
    body = json.dumps(batch(item()))
    assert httpx.post(r.post_url, content=body, headers={**auth, **JSON}).status_code == 200
    form = httpx.post(r.post_url, content=body, headers={**auth, "Content-Type": "text/plain"})
    assert form.status_code == 415
    assert httpx.post(f"{r.url}/", content=body, headers={**auth, **JSON}).status_code == 404
    assert httpx.post(f"{r.url}/audit/x", content=body, headers={**auth, **JSON}).status_code == 404
    preflight = httpx.options(
        r.post_url,
        headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert preflight.status_code == 405
    assert not any(h.lower().startswith("access-control-") for h in preflight.headers)
    stats = r.stop()
    assert stats["events"] == 1 and stats["unsupported_media_type"] == 1 and stats["not_found"] == 2


# -- 7. one acceptance rule for the receiver and clean -------------------------------------------------
def test_the_receiver_acknowledges_exactly_what_clean_keeps(receiver: Any, tmp_path: Path) -> None:
    r = receiver()
    refused = [
        item(requestReceivedTimestamp=None, stageTimestamp=None),
        item(requestReceivedTimestamp="yesterday"),
        item(responseStatus={"code": "two hundred"}),
        item(verb=["create"]),
        item(requestReceivedTimestamp="0001-01-01T00:00:00Z"),  # Go's zero time: outside 1677..2262
        item(responseStatus={"code": 2**40}),
    ]
    kept = [item(), item(requestReceivedTimestamp="2024-05-01T10:00:05.123456789Z"), item(stage="Panic")]
    answer = httpx.post(r.post_url, json=batch(*refused, *kept)).json()
    assert answer == {"accepted": len(kept), "rejected": len(refused), "rejects_recorded": len(refused)}
    r.stop()
    reasons = [json.loads(x)["reason"].split(":")[0] for x in (tmp_path / "out" / REJECTS_NAME).open()]
    assert reasons == [
        "missing-timestamp",
        "bad-field",
        "bad-field",
        "bad-field",
        "bad-timestamp",
        "bad-field",
    ]
    ids, summary = cleaned(tmp_path / "out", tmp_path)
    assert sorted(ids) == sorted(i["auditID"] for i in kept) and summary.rejected == 0


# -- 4. slow senders ------------------------------------------------------------------------------------
def _trickle(url: str, source: str, head: bytes, stop: threading.Event) -> None:
    """A sender that sends ``head`` one byte every 0.5 s from ``source`` until closed or stopped."""
    host, port = url.removeprefix("http://").split(":")
    try:
        with socket.create_connection((host, int(port)), timeout=30, source_address=(source, 0)) as sock:
            for byte in head:
                if stop.wait(0.5):
                    return
                sock.sendall(bytes([byte]))
    except OSError:
        return  # reset by the cap, or closed at the deadline: what the receiver should do


@pytest.mark.slow
def test_slow_senders_do_not_lock_out_normal_senders(receiver: Any) -> None:
    r = receiver(request_timeout_seconds=3.0, max_connections_per_client=8)
    payload = json.dumps(batch(item())).encode()
    body_head = (
        b"POST /audit HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(payload) + payload
    )
    header_head = b"POST /audit HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200
    stop = threading.Event()
    attackers = [  # from 127.0.0.2: bodies trickled after their headers, and headers trickled forever
        threading.Thread(target=_trickle, args=(r.url, "127.0.0.2", head, stop), daemon=True)
        for head in [body_head] * 2 + [header_head] * 40
    ]
    for thread in attackers:
        thread.start()
    try:
        time.sleep(1.0)
        worst = 0.0
        for _ in range(10):  # a normal sender keeps getting 200 in well under a second
            started = time.monotonic()
            assert httpx.post(r.post_url, json=batch(item()), timeout=10).status_code == 200
            worst = max(worst, time.monotonic() - started)
            time.sleep(0.4)
        assert worst < 2.0
        deadline = time.monotonic() + 10
        while r.stats.snapshot()["timeouts"] < 8 and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        stop.set()
    stats = r.stop()
    assert stats["events"] == 10 and stats["refused_connections"] >= 30  # 40 + 2 from one address, cap 8
    assert stats["timeouts"] >= 8  # every admitted trickler was cut at its deadline


def _stall_after(url: str, source: str, head: bytes, stop: threading.Event) -> None:
    """A sender that sends ``head`` at once from ``source``, then nothing; when cut off, it reconnects."""
    host, port = url.removeprefix("http://").split(":")
    while not stop.is_set():
        try:
            with socket.create_connection((host, int(port)), timeout=30, source_address=(source, 0)) as sock:
                sock.sendall(head)
                sock.settimeout(0.2)
                while not stop.is_set():
                    try:
                        if sock.recv(1024) == b"":
                            break  # closed by the receiver: come back, as a hostile local process would
                    except TimeoutError:
                        continue
        except OSError:
            stop.wait(0.05)


@pytest.mark.slow
def test_local_attackers_on_several_addresses_do_not_lock_out_normal_senders(receiver: Any) -> None:
    r = receiver()  # defaults: 64 connections, 32 per address, a 64 MiB body budget, 30 s deadline
    headers = b"POST /audit HTTP/1.1\r\nHost: x\r\n"  # the request line, then silence
    stalled = (  # a large body declared, 2.5 MiB of it sent at once, then silence
        b"POST /audit HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 16000000\r\n\r\n" + b" " * (5 << 19)
    )
    stop = threading.Event()
    attackers = [
        threading.Thread(target=_stall_after, args=(r.url, source, head, stop), daemon=True)
        for source, head, count in [
            ("127.0.0.2", headers, 32),
            ("127.0.0.3", headers, 32),
            ("127.0.0.4", stalled, 12),
            ("127.0.0.5", stalled, 12),
        ]
        for _ in range(count)
    ]
    for thread in attackers:
        thread.start()
    try:
        time.sleep(3.0)
        failures, worst = 0, 0.0
        for _ in range(20):
            started = time.monotonic()
            try:
                ok = httpx.post(r.post_url, json=batch(item()), timeout=10).status_code == 200
            except httpx.TransportError:
                ok = False
            failures += not ok
            worst = max(worst, time.monotonic() - started)
            time.sleep(0.3)
    finally:
        stop.set()
    stats = r.stop()
    shown = {k: v for k, v in stats.items() if v and k not in ("files", "started_at", "out_dir")}
    assert failures <= 2, f"{failures} {shown}"
    assert worst < 5.0 and stats["evicted_connections"] > 0 and stats["timeouts"] > 0


def test_a_sender_over_its_share_of_the_body_budget_gets_503(receiver: Any) -> None:
    r = receiver(max_buffered_bytes=4 * 1024 * 1024)  # one address: 2 MiB at most
    body = json.dumps(batch(*(item(annotations={"pad": "x" * 4096}) for _ in range(600)))).encode()
    assert len(body) > 2 * 1024 * 1024
    answer = httpx.post(r.post_url, content=body, headers=JSON)
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "1"
    assert httpx.post(r.post_url, json=batch(item())).status_code == 200


# -- 10. an output folder that cannot be written -----------------------------------------------------------
def test_receive_into_a_folder_it_cannot_create_is_one_line_exit_3(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = subprocess.run(
        [sys.executable, "-m", "perfspec", "receive", "--port", "0", "--out", str(blocker / "out")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr and "cannot write audit events" in result.stderr
    assert "hint" in result.stderr.lower()


def test_stored_lines_are_what_the_log_backend_writes(receiver: Any, tmp_path: Path) -> None:
    r = receiver()
    body = batch(item(), item(apiVersion="audit.k8s.io/v1beta1", requestObject={"data": {"k": "v"}}))
    assert httpx.post(r.post_url, json=body).json()["accepted"] == 2
    stats = r.stop()
    stored = read_jsonl(tmp_path / "out")
    assert [list(e)[:2] for e in stored] == [["kind", "apiVersion"]] * 2
    assert [e["apiVersion"] for e in stored] == ["audit.k8s.io/v1", "audit.k8s.io/v1beta1"]
    assert "requestObject" not in stored[1] and stats["bodies_dropped"] == 1


def test_reject_reasons_are_short_and_never_show_an_objects_inside(receiver: Any, tmp_path: Path) -> None:
    r = receiver()
    secret = {"data": {"password": "SUPERSECRET"}}
    huge_stage = "x" * 100_000
    body = batch(item(kind=secret), item(stage=huge_stage), item(verb={"stringData": "SUPERSECRET"}))
    assert httpx.post(r.post_url, json=body).json()["rejected"] == 3
    r.stop()
    text = (tmp_path / "out" / REJECTS_NAME).read_text()
    assert "SUPERSECRET" not in text
    reasons = [json.loads(line)["reason"] for line in text.splitlines()]
    assert reasons[0] == "not-an-event: kind is a JSON object, expected 'Event'"
    assert all(len(reason) < 200 for reason in reasons)


def test_line_breaks_inside_a_value_cannot_split_a_stored_event(receiver: Any, tmp_path: Path) -> None:
    r = receiver()
    forged = json.dumps(item(auditID="forged-1", verb="delete"))
    body = json.dumps(
        batch(item(auditID="real-1", annotations={"a": ["PLACEHOLDER"]}), item(auditID="real-2"))
    )
    body = body.replace('"PLACEHOLDER"', "\n" + forged + "\r\n")  # JSON whitespace around a nested value
    assert httpx.post(r.post_url, content=body, headers=JSON).json()["accepted"] == 2
    r.stop()
    ids, summary = cleaned(tmp_path / "out", tmp_path)
    assert sorted(ids) == ["real-1", "real-2"] and summary.rejected == 0


def test_an_event_longer_than_cleans_line_limit_is_not_acknowledged(tmp_path: Path) -> None:
    r = AuditReceiver(tmp_path / "out", ReceiverSettings(port=0), max_line_bytes=50_000).start()
    try:
        body = batch(item(), item(annotations={"a": "x" * 60_000}))
        answer = httpx.post(r.post_url, json=body).json()
        assert (answer["accepted"], answer["rejected"]) == (1, 1)
    finally:
        r.stop()
    (reject,) = [json.loads(line) for line in (tmp_path / "out" / REJECTS_NAME).open()]
    assert reject["reason"].startswith("line-too-long")


def test_an_escaped_body_key_in_an_unparsable_item_is_still_redacted(receiver: Any, tmp_path: Path) -> None:
    r = receiver()
    good = json.dumps(item())
    hidden = good[:-1] + ',"x":1e400,"requestOb\\u006aect":{"d\\u0061ta":{"pw":"SUPERSECRET"}}}'
    body = '{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[' + good + "," + hidden + "]}"
    answer = httpx.post(r.post_url, content=body, headers=JSON).json()
    assert (answer["accepted"], answer["rejected"]) == (1, 1)
    r.stop()
    assert "SUPERSECRET" not in (tmp_path / "out" / REJECTS_NAME).read_text()
