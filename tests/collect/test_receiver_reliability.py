"""Reliability of `perfspec receive` under SIGKILL: retrying senders, restarts, exact accounting.

Several sender threads POST EventList batches the way the API server's webhook backend does (a batch is
retried until a 2xx: connection refused, resets and 503 are retried after a short sleep), while the main
thread SIGKILLs the receiver every 0.5-1.5 s and restarts it on the same --out folder and port. Afterwards
the raw files and the cleaner's events.parquet must hold every acknowledged event, invent none, and only
the last line of a file may be torn (an unacknowledged write cut by the kill).
"""

from __future__ import annotations

import json
import os
import random
import signal
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
from perfspec.audit.readers import NotAnEvent, event_row
from perfspec.settings import CleanSettings
from tests.collect.conftest import REPO_ROOT

SEED = 20240611
SENDERS = 4
KILLS = 7
BATCH_ITEMS = 12
ROTATE_BYTES = 150_000  # several rotations per generation: rotation and restart interleave
BATCH_DEADLINE_S = 40.0  # a batch not acknowledged by then fails the test (the receiver is down < 3 s)
START_DEADLINE_S = 30.0
HEADERS = {"Content-Type": "application/json"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _templates(sample_events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Real v1 events as EventList items (no kind/apiVersion), only those the receiver accepts."""
    items = []
    for event in sample_events:
        if event.get("apiVersion", "audit.k8s.io/v1") != "audit.k8s.io/v1":
            continue
        item = {k: v for k, v in event.items() if k not in ("kind", "apiVersion")}
        try:
            event_row(item)
        except NotAnEvent:
            continue
        items.append(item)
    return items


class Receiver:
    """One `perfspec receive` process at a time on a fixed port and --out folder; logs in files."""

    def __init__(self, port: int, out: Path, logs: Path) -> None:
        self.port, self.out, self.logs = port, out, logs
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.generation = 0
        logs.mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        self.generation += 1
        args = [sys.executable, "-m", "perfspec", "receive", "--port", str(self.port), "--out", str(self.out)]
        args += ["--rotate-bytes", str(ROTATE_BYTES)]
        with (
            open(self.logs / f"{self.generation}.out", "wb") as stdout,
            open(self.logs / f"{self.generation}.err", "wb") as stderr,
        ):
            self.proc = subprocess.Popen(
                args, cwd=REPO_ROOT, stdout=stdout, stderr=stderr, env={**os.environ, "DO_NOT_TRACK": "true"}
            )
        deadline = time.monotonic() + START_DEADLINE_S
        while True:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert self.proc.poll() is None, f"receiver exited: {self.stderr()}"
            assert time.monotonic() < deadline, f"receiver not answering /healthz: {self.stderr()}"
            time.sleep(0.05)

    def stderr(self) -> str:
        return (self.logs / f"{self.generation}.err").read_text(errors="replace")

    def kill(self) -> None:
        assert self.proc is not None and self.proc.poll() is None, f"receiver died: {self.stderr()}"
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        assert self.proc.returncode == -signal.SIGKILL

    def terminate(self) -> dict[str, Any]:
        assert self.proc is not None and self.proc.poll() is None, f"receiver died: {self.stderr()}"
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)
        assert self.proc.returncode == 0, self.stderr()
        assert "Traceback" not in self.stderr()
        lines = (self.logs / f"{self.generation}.out").read_text().strip().splitlines()
        return json.loads(lines[-1])

    def ensure_dead(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)


class Ledger:
    """What the senders sent and what got a 2xx, shared by the threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sent: set[str] = set()
        self.acknowledged: list[str] = []
        self.batches = 0
        self.failed_attempts = 0
        self.errors: list[str] = []


def _sender(
    url: str, templates: list[dict[str, Any]], rng: random.Random, stop: threading.Event, ledger: Ledger
) -> None:
    """Post fresh batches until ``stop``; each batch is retried until acknowledged (or its deadline)."""
    client = httpx.Client(base_url=url, timeout=httpx.Timeout(10.0, connect=2.0))
    try:
        while not stop.is_set():
            items = [dict(rng.choice(templates), auditID=str(uuid.uuid4())) for _ in range(BATCH_ITEMS)]
            ids = [item["auditID"] for item in items]
            body = json.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": items})
            with ledger.lock:
                ledger.sent.update(ids)
            deadline = time.monotonic() + BATCH_DEADLINE_S
            while True:
                try:
                    response = client.post("/audit", content=body, headers=HEADERS)
                except httpx.TransportError:  # refused, reset, closed mid-answer: the webhook retries
                    status = None
                    client.close()
                    client = httpx.Client(base_url=url, timeout=httpx.Timeout(10.0, connect=2.0))
                else:
                    status = response.status_code
                    if 200 <= status < 300:
                        answer = response.json()
                        if (answer["accepted"], answer["rejected"]) != (len(items), 0):
                            with ledger.lock:
                                ledger.errors.append(f"unexpected answer {answer}")
                        with ledger.lock:
                            ledger.acknowledged += ids
                            ledger.batches += 1
                        break
                    if status < 500:  # 4xx: the webhook backend would drop the batch; a test bug here
                        with ledger.lock:
                            ledger.errors.append(f"{status}: {response.text[:200]}")
                        stop.set()
                        return
                with ledger.lock:
                    ledger.failed_attempts += 1
                if time.monotonic() > deadline:
                    with ledger.lock:
                        ledger.errors.append(f"batch not acknowledged in {BATCH_DEADLINE_S}s (last {status})")
                    stop.set()
                    return
                time.sleep(0.02 + rng.random() * 0.08)
    except Exception as error:  # surfaced by the main thread's assertion
        with ledger.lock:
            ledger.errors.append(f"sender crashed: {error!r}")
        stop.set()
    finally:
        client.close()


def _raw_lines(out: Path) -> tuple[list[str], list[str]]:
    """(auditIDs of every valid line, descriptions of torn tails); a bad line not last in its file fails."""
    ids: list[str] = []
    torn: list[str] = []
    files = sorted(out.glob("audit-*.jsonl"))
    assert files, "no audit files written"
    for path in files:
        lines = path.read_bytes().split(b"\n")  # a complete file ends with b"\n": last element b""
        for number, line in enumerate(lines, start=1):
            if not line and number == len(lines):
                continue
            try:
                event = json.loads(line)
            except ValueError:
                assert number == len(lines), f"{path.name}:{number} is not JSON and not the file's tail"
                torn.append(f"{path.name}:{number} ({len(line)} bytes)")
                continue
            ids.append(event["auditID"])
    return ids, torn


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_sigkill_restarts_lose_no_acknowledged_event(
    sample_events: list[dict[str, Any]], tmp_path: Path
) -> None:
    started = time.monotonic()
    templates = _templates(sample_events)
    assert len(templates) > 20
    out, clean = tmp_path / "raw" / "camp", tmp_path / "clean"
    receiver = Receiver(_free_port(), out, tmp_path / "logs")
    rng = random.Random(SEED)
    ledger = Ledger()
    stop = threading.Event()
    threads = [
        threading.Thread(
            target=_sender,
            args=(receiver.url, templates, random.Random(rng.random()), stop, ledger),
            name=f"sender-{n}",
            daemon=True,
        )
        for n in range(SENDERS)
    ]
    kills = 0
    try:
        receiver.start()
        for thread in threads:
            thread.start()
        for _ in range(KILLS):
            if stop.wait(rng.uniform(0.5, 1.5)):
                break  # a sender failed: stop early, reported below
            receiver.kill()
            kills += 1
            receiver.start()
        time.sleep(1.0)  # let the last generation acknowledge a few batches too
        stop.set()
        for thread in threads:
            thread.join(timeout=BATCH_DEADLINE_S + 15)
        assert not any(t.is_alive() for t in threads), "a sender did not finish"
        assert not ledger.errors, ledger.errors[:5]
        final = receiver.terminate()
    finally:
        stop.set()
        receiver.ensure_dead()

    acknowledged = set(ledger.acknowledged)
    assert len(acknowledged) == len(ledger.acknowledged)  # fresh IDs: a batch is acknowledged once
    assert ledger.acknowledged and kills == KILLS
    # every batch sent was retried until acknowledged (senders finish their batch before stopping)
    assert acknowledged == ledger.sent

    raw_ids, torn = _raw_lines(out)
    raw_set = set(raw_ids)
    assert acknowledged <= raw_set, f"{len(acknowledged - raw_set)} acknowledged events lost in raw files"
    assert raw_set <= ledger.sent, f"{len(raw_set - ledger.sent)} invented events in raw files"
    assert final["stopped"] and final["events"] > 0  # only the last generation's count

    summary = clean_sources([out], clean, CleanSettings())
    stored_ids = pq.read_table(clean / "events.parquet", columns=["audit_id"]).column("audit_id").to_pylist()
    stored = set(stored_ids)
    assert len(stored) == len(stored_ids)  # the cleaner merged the retried duplicates
    assert not acknowledged - stored, f"{len(acknowledged - stored)} acknowledged events lost"
    assert len(stored) <= len(ledger.sent) and stored <= ledger.sent, "events invented"
    duplicates = len(raw_ids) - len(raw_set)
    assert summary.duplicates == duplicates and summary.rejected == len(torn)
    assert summary.read == len(raw_ids) + len(torn)
    files = sorted(p.name for p in out.glob("audit-*.jsonl"))
    print(
        f"\nreceiver reliability: acknowledged={len(acknowledged)} stored={len(stored)} "
        f"duplicates={duplicates} kills={kills} torn_tails={len(torn)} {torn} "
        f"batches={ledger.batches} failed_attempts={ledger.failed_attempts} files={len(files)} "
        f"wall={time.monotonic() - started:.1f}s"
    )
