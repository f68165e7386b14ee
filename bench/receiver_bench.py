"""``python -m bench receiver``: peak memory of the audit webhook receiver for hostile body shapes, and its
throughput on realistic batches (issue 11).

The receiver is the real CLI, ``python -m perfspec receive --port P --out TMP`` (default settings: bodies
up to 16 MiB, 4000 items, 2 processed at once), on loopback; its outputs go to a temporary folder that is
removed afterwards. Nothing is written into the repository.

* **Memory**: for each body shape a FRESH receiver is started; its ``VmHWM`` (peak resident set, from
  ``/proc/<pid>/status``) is read when idle and again after the reply, so the difference is what that one
  request cost. Shapes fill the body to just under 16 MiB: one valid Metadata event carrying an extra
  ``annotations`` field of ``[[],[],…]``, ``[{},{},…]``, ``{"k0":0,…}`` or one long string; 4000
  realistic events padded to 16 MiB; 1.6 M ``{}`` items and 16 MiB of them (413: too many items); one
  event whose 14 row fields are ~1 MiB each of ``[{"":{}},…]`` (refused by the fast path, so the slow path
  parses them into Python objects); and two bodies of the first shape, of the 16 MiB of ``{}`` and of
  the slow-path shape, each pair sent at once on two connections. Target: peak under 1 GiB for any
  accepted request.
* **Throughput**: EventList batches of 400 realistic Metadata events (~1 KB each, unique audit IDs),
  sent back to back by 1 and by 8 concurrent keep-alive senders for ``--seconds`` each: acknowledged
  events/s and per-batch latency p50/p99 (the reply comes after the write + fsync). Afterwards the lines
  stored in the output files are counted and must equal the events acknowledged.

    python -m bench receiver            # ~10 s per throughput run, all shapes (~1-2 min)
    python -m bench receiver --quick    # ~3 s per throughput run
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import itertools
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parent.parent
MiB = 1 << 20
MAX_BODY = 16 * MiB  # the receiver's default --max-body
BODY_TARGET = MAX_BODY - 4096  # "as close to 16 MiB as allowed"
MAX_ITEMS = 4000  # the receiver's default max_batch_items
JSON_HEADERS = {"Content-Type": "application/json"}
LIST_HEAD = b'{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":['
LIST_TAIL = b"]}"
#: The top-level fields the receiver's slow path parses when the fast path refuses an item.
ROW_FIELDS = (
    "kind", "auditID", "stage", "requestReceivedTimestamp", "stageTimestamp", "timestamp", "verb", "user",
    "userAgent", "sourceIPs", "objectRef", "responseStatus", "requestURI", "level",
)  # fmt: skip
PARSE_LIMIT = 1 << 20  # intake.PARSE_LIMIT: fields up to this size may be parsed into Python objects
ISSUE_BEFORE = (
    "before the change (issue 11): one 64 MiB body of 1.6 M tiny items took the receiver to 7.2 GiB "
    "(two at once: 8.5 GiB)"
)

# --- events ------------------------------------------------------------------------------------------


def _item(**extra: Any) -> dict[str, Any]:
    """A valid Metadata-level event as the webhook sends it (``item()`` of the receiver tests)."""
    value: dict[str, Any] = {
        "level": "Metadata",
        "auditID": str(uuid.uuid4()),
        "stage": "ResponseComplete",
        "requestURI": "/api/v1/namespaces/ns/configmaps",
        "verb": "create",
        "user": {"username": "kubernetes-admin", "groups": ["system:masters"]},
        "sourceIPs": ["172.18.0.1"],
        "userAgent": "helm/v3.15",
        "objectRef": {"resource": "configmaps", "namespace": "ns", "name": "c", "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": 201},
        "requestReceivedTimestamp": "2024-05-01T10:00:00.123456Z",
        "stageTimestamp": "2024-05-01T10:00:00.223456Z",
    }
    value.update(extra)
    return value


_CALLERS = (
    (
        "system:serviceaccount:kube-system:replicaset-controller",
        ["system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"],
        "kube-controller-manager/v1.29.2 (linux/amd64) kubernetes/4b8e819/system:serviceaccount:kube-system:"
        "replicaset-controller",
        "172.18.0.3",
    ),
    (
        "system:node:perfspec-worker",
        ["system:nodes", "system:authenticated"],
        "kubelet/v1.29.2 (linux/amd64) kubernetes/4b8e819",
        "172.18.0.4",
    ),
    (
        "system:kube-scheduler",
        ["system:authenticated"],
        "kube-scheduler/v1.29.2 (linux/amd64) kubernetes/4b8e819/scheduler",
        "172.18.0.3",
    ),
    (
        "kubernetes-admin",
        ["kubeadm:cluster-admins", "system:authenticated"],
        "kubectl/v1.29.2 (linux/amd64) kubernetes/4b8e819",
        "172.18.0.1",
    ),
)
_REQUESTS = (  # verb, resource, apiGroup, subresource, code
    ("create", "pods", "", "", 201),
    ("update", "leases", "coordination.k8s.io", "", 200),
    ("patch", "pods", "", "status", 200),
    ("get", "configmaps", "", "", 200),
    ("create", "events", "events.k8s.io", "", 201),
    ("update", "deployments", "apps", "status", 200),
    ("delete", "pods", "", "", 200),
    ("create", "bindings", "", "", 201),
)


def _realistic(index: int, audit_id: str) -> dict[str, Any]:
    """A ~1 KB Metadata event like the API server's webhook sends (user groups, agent, objectRef, RBAC)."""
    username, groups, agent, source = _CALLERS[index % len(_CALLERS)]
    verb, resource, group, sub, code = _REQUESTS[index % len(_REQUESTS)]
    namespace = f"perfspec-ns-{index % 7}"
    name = f"{resource[:-1]}-{index:05d}-7c9f8d6b5-x2kqz"
    prefix = f"/apis/{group}/v1" if group else "/api/v1"
    uri = f"{prefix}/namespaces/{namespace}/{resource}" + (
        "" if verb == "create" else f"/{name}" + (f"/{sub}" if sub else "")
    )
    micros = 100_000 + index * 997 % 800_000
    ref: dict[str, Any] = {"resource": resource, "namespace": namespace, "name": name, "apiVersion": "v1"}
    if group:
        ref["apiGroup"] = group
    if sub:
        ref["subresource"] = sub
    return {
        "level": "Metadata",
        "auditID": audit_id,
        "stage": "ResponseComplete",
        "requestURI": uri + "?timeout=10s",
        "verb": verb,
        "user": {"username": username, "groups": groups},
        "sourceIPs": [source],
        "userAgent": agent,
        "objectRef": ref,
        "responseStatus": {"metadata": {}, "code": code},
        "requestReceivedTimestamp": f"2024-05-01T10:{index // 60 % 60:02d}:{index % 60:02d}.{micros:06d}Z",
        "stageTimestamp": f"2024-05-01T10:{index // 60 % 60:02d}:{index % 60:02d}.{micros + 4321:06d}Z",
        "annotations": {
            "authorization.k8s.io/decision": "allow",
            "authorization.k8s.io/reason": 'RBAC: allowed by ClusterRoleBinding "system:controller:'
            f'{resource}-{verb}" of ClusterRole "system:controller:{resource}-{verb}" to User "{username}"',
            "pod-security.kubernetes.io/enforce-policy": "privileged:latest",
        },
    }


# --- body shapes ---------------------------------------------------------------------------------------


def _fill(head: bytes, units: Iterator[bytes], tail: bytes, target: int = BODY_TARGET) -> bytes:
    """``head + unit,unit,… + tail`` with as many units as fit in ``target`` bytes."""
    room = target - len(head) - len(tail)
    parts: list[bytes] = []
    used = -1
    for unit in units:
        if used + 1 + len(unit) > room:
            break
        parts.append(unit)
        used += 1 + len(unit)
    return head + b",".join(parts) + tail


def _one_item_with(open_: bytes, units: Iterator[bytes], close: bytes) -> bytes:
    """One valid event whose extra ``annotations`` field (open_ units close) fills the body."""
    head = LIST_HEAD + orjson.dumps(_item())[:-1] + b',"annotations":' + open_
    return _fill(head, units, close + b"}" + LIST_TAIL)


def _long_string() -> bytes:
    head = LIST_HEAD + orjson.dumps(_item())[:-1] + b',"annotations":{"note":"'
    tail = b'"}}' + LIST_TAIL
    return head + b"x" * (BODY_TARGET - len(head) - len(tail)) + tail


def _padded_realistic() -> bytes:
    """4000 realistic events, each padded (one more annotation) to fill the body evenly."""
    events = [orjson.dumps(_realistic(i, str(uuid.uuid4()))) for i in range(MAX_ITEMS)]
    per_item = (BODY_TARGET - len(LIST_HEAD) - len(LIST_TAIL) - (MAX_ITEMS - 1)) // MAX_ITEMS
    pad_key = b',"perfspec.dev/pad":"'
    padded = []
    for event in events:
        room = per_item - len(event) - len(pad_key) - 1  # event[:-2] + pad_key + room + '"}}'
        padded.append(event[:-2] + pad_key + b"p" * room + b'"}}')  # inside "annotations"
    return LIST_HEAD + b",".join(padded) + LIST_TAIL


def _slow_path_item() -> bytes:
    """One event whose 14 fields the slow path parses are each just under 1 MiB (PARSE_LIMIT) of
    ``[{"":{}},…]``, the densest JSON for Python objects found (~32 bytes of objects per byte)."""
    fields = []
    per_field = min(PARSE_LIMIT - 64, (BODY_TARGET - 64) // len(ROW_FIELDS) - 32)
    for key in ROW_FIELDS:
        count = (per_field - 2) // 8
        fields.append(b'"' + key.encode() + b'":[' + b",".join([b'{"":{}}'] * count) + b"]")
    return LIST_HEAD + b"{" + b",".join(fields) + b"}" + LIST_TAIL


@dataclass
class Shape:
    key: str
    label: str
    build: Callable[[], bytes]
    items: str
    connections: int = 1


def _nested(open_: bytes, unit: bytes, close: bytes) -> Callable[[], bytes]:
    return lambda: _one_item_with(open_, itertools.repeat(unit), close)


def _keys() -> bytes:
    return _one_item_with(b"{", (b'"k%d":0' % i for i in itertools.count()), b"}")


def _top_level_keys() -> bytes:
    """One event with ~1.4 M extra top-level fields (stored lines copy top-level fields one by one)."""
    head = LIST_HEAD + orjson.dumps(_item())[:-1] + b","
    return _fill(head, (b'"k%d":0' % i for i in itertools.count()), b"}" + LIST_TAIL)


def _tiny_items(count: int | None) -> Callable[[], bytes]:
    if count is None:
        return lambda: _fill(LIST_HEAD, itertools.repeat(b"{}"), LIST_TAIL)
    return lambda: LIST_HEAD + b",".join([b"{}"] * count) + LIST_TAIL


SHAPES = (
    Shape("a", "1 event + annotations [[],[],…]", _nested(b"[", b"[]", b"]"), "1"),
    Shape("b", "1 event + annotations [{},{},…]", _nested(b"[", b"{}", b"]"), "1"),
    Shape("c", '1 event + annotations {"k0":0,"k1":0,…}', _keys, "1"),
    Shape("d", "1 event + one long string", _long_string, "1"),
    Shape("e", "4000 realistic events, padded", _padded_realistic, "4,000"),
    Shape("f", "1.6 M tiny items [{},{},…]", _tiny_items(1_600_000), "1,600,000"),
    Shape("f2", "16 MiB of tiny items [{},{},…]", _tiny_items(None), "~5.6 M"),
    Shape("h", '1 event, 14 fields of ~1 MiB [{"":{}},…] (slow path)', _slow_path_item, "1"),
    Shape("i", "1 event with ~1.4 M top-level fields", _top_level_keys, "1"),
    Shape("g", "2 × (a) at once, 2 connections", _nested(b"[", b"[]", b"]"), "1 + 1", 2),
    Shape("f3", "2 × (f2) at once, 2 connections", _tiny_items(None), "2 × ~5.6 M", 2),
    Shape("h2", "2 × (h) at once, 2 connections", _slow_path_item, "1 + 1", 2),
    Shape("i2", "2 × (i) at once, 2 connections", _top_level_keys, "1 + 1", 2),
)


# --- the receiver process --------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _proc_memory(pid: int) -> dict[str, float]:
    """VmHWM and VmRSS of a process, in MiB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmHWM", "VmRSS"):
            values[name] = int(rest.split()[0]) / 1024  # kB
    return values


class Receiver:
    """``python -m perfspec receive`` in a subprocess writing into a temporary folder."""

    def __init__(self, workdir: Path) -> None:
        self.out = Path(tempfile.mkdtemp(prefix="out-", dir=workdir))
        self.port = _free_port()
        self.log_path = self.out.with_suffix(".log")
        env = {k: v for k, v in os.environ.items() if not k.startswith("PERFSPEC_RECEIVER__")}
        command = [sys.executable, "-m", "perfspec", "receive", "--port", str(self.port)]
        command += ["--out", str(self.out)]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env)
        try:
            self._wait_healthy()
        except BaseException:
            self.proc.kill()
            self.proc.wait()
            raise

    def _wait_healthy(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                log = self.log_path.read_text()[-2000:]
                raise RuntimeError(f"receiver exited ({self.proc.returncode}): {log}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                try:
                    conn.request("GET", "/healthz")
                    if conn.getresponse().status == 200:
                        return
                finally:
                    conn.close()
            time.sleep(0.05)
        raise RuntimeError(f"receiver not healthy after {timeout:.0f} s: {self.log_path.read_text()[-2000:]}")

    def memory(self) -> dict[str, float]:
        return _proc_memory(self.proc.pid)

    def stop(self) -> dict[str, Any]:
        """SIGTERM, wait for the drain; the final stats line the CLI prints ({} when absent)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for line in reversed(self.log_path.read_text(errors="replace").splitlines()):
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    return dict(json.loads(line))
        return {}

    def stored_lines(self) -> int:
        return sum(path.read_bytes().count(b"\n") for path in sorted(self.out.glob("audit-*.jsonl")))

    def __enter__(self) -> Receiver:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.stop()


def _post(port: int, body: bytes, timeout: float = 300.0) -> tuple[int | str, Any, float]:
    """(HTTP status or the error's name, reply JSON, seconds) of one POST on a fresh connection."""
    began = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", "/audit", body=body, headers=JSON_HEADERS)
        response = conn.getresponse()
        data = response.read()
        status: int | str = response.status
    except (OSError, http.client.HTTPException) as error:
        return type(error).__name__, None, time.perf_counter() - began
    finally:
        conn.close()
    try:
        reply = orjson.loads(data)
    except orjson.JSONDecodeError:
        reply = data[:200].decode(errors="replace")
    return status, reply, time.perf_counter() - began


# --- memory ----------------------------------------------------------------------------------------------


@dataclass
class MemoryRow:
    shape: Shape
    body_mib: float
    statuses: list[int | str]
    replies: list[Any]
    idle: float
    peak: float
    rss_after: float
    seconds: float


def _reply_text(reply: Any) -> str:
    if isinstance(reply, dict):
        if "accepted" in reply:
            return f"accepted {reply['accepted']}, rejected {reply['rejected']}"
        text = str(reply.get("error", reply))
        return text if len(text) <= 48 else text[:45] + "..."
    return str(reply)[:48]


def measure_memory(shape: Shape, workdir: Path) -> MemoryRow:
    body = shape.build()
    assert len(body) <= MAX_BODY, (shape.key, len(body))
    with Receiver(workdir) as receiver:
        time.sleep(0.3)  # let start-up settle (imports done, threads started)
        idle = receiver.memory()["VmHWM"]
        results: list[tuple[int | str, Any, float]] = [("-", None, 0.0)] * shape.connections
        barrier = threading.Barrier(shape.connections)

        def send(slot: int) -> None:
            barrier.wait()
            results[slot] = _post(receiver.port, body)

        threads = [threading.Thread(target=send, args=(i,)) for i in range(shape.connections)]
        began = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        seconds = time.perf_counter() - began
        after = receiver.memory()
        receiver.stop()
        shutil.rmtree(receiver.out, ignore_errors=True)
    return MemoryRow(
        shape,
        len(body) / MiB,
        [status for status, _, _ in results],
        [reply for _, reply, _ in results],
        idle,
        after["VmHWM"],
        after["VmRSS"],
        seconds,
    )


# --- throughput ------------------------------------------------------------------------------------------

PLACEHOLDER = b"@batch@@"  # 8 characters, replaced by the batch number in hex: unique audit IDs


def batch_template(size: int) -> bytes:
    """An EventList of ``size`` realistic events whose audit IDs start with PLACEHOLDER."""
    items = [_realistic(i, f"{PLACEHOLDER.decode()}-{i:04x}-4{uuid.uuid4().hex[:15]}") for i in range(size)]
    body = orjson.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": items})
    assert body.count(PLACEHOLDER) == size
    return body


@dataclass
class SenderResult:
    latencies: list[float] = field(default_factory=list)
    acked: int = 0
    warmup_acked: int = 0
    sent_bytes: int = 0
    statuses: Counter[int | str] = field(default_factory=Counter)


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]  # nearest rank


def measure_throughput(senders: int, seconds: float, template: bytes, workdir: Path) -> dict[str, Any]:
    numbers = itertools.count()
    go = threading.Barrier(senders + 1)
    stop = threading.Event()
    results = [SenderResult() for _ in range(senders)]
    with Receiver(workdir) as receiver:

        def post(conn: http.client.HTTPConnection, result: SenderResult) -> tuple[int | str, int]:
            body = template.replace(PLACEHOLDER, b"%08x" % next(numbers))
            try:
                conn.request("POST", "/audit", body=body, headers=JSON_HEADERS)
                response = conn.getresponse()
                data = response.read()
            except (OSError, http.client.HTTPException) as error:
                conn.close()  # http.client reconnects on the next request
                return type(error).__name__, 0
            result.sent_bytes += len(body)
            accepted = int(orjson.loads(data).get("accepted", 0)) if response.status == 200 else 0
            return response.status, accepted

        def sender(result: SenderResult) -> None:
            conn = http.client.HTTPConnection("127.0.0.1", receiver.port, timeout=60)
            try:
                for _ in range(3):  # warm-up: connection, receiver threads, first file
                    result.warmup_acked += post(conn, result)[1]
                result.sent_bytes = 0
                go.wait()
                while not stop.is_set():
                    began = time.perf_counter()
                    status, accepted = post(conn, result)
                    elapsed = time.perf_counter() - began
                    result.statuses[status] += 1
                    if status == 200:
                        result.latencies.append(elapsed)
                        result.acked += accepted
                    else:
                        time.sleep(0.05)
            finally:
                conn.close()

        threads = [threading.Thread(target=sender, args=(result,)) for result in results]
        for thread in threads:
            thread.start()
        go.wait()
        began = time.perf_counter()
        time.sleep(seconds)
        stop.set()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - began
        memory = receiver.memory()
        stats = receiver.stop()
        stored = receiver.stored_lines()
        shutil.rmtree(receiver.out, ignore_errors=True)
    latencies = [lat for result in results for lat in result.latencies]
    acked = sum(result.acked for result in results)
    statuses: Counter[int | str] = sum((result.statuses for result in results), Counter())
    warm = sum(result.warmup_acked for result in results)
    return {
        "senders": senders,
        "batches": len(latencies),
        "events": acked,
        "seconds": wall,
        "events_per_s": acked / wall,
        "mb_per_s": sum(result.sent_bytes for result in results) / wall / 1e6,
        "p50_ms": _percentile(latencies, 50) * 1e3,
        "p99_ms": _percentile(latencies, 99) * 1e3,
        "max_ms": max(latencies, default=float("nan")) * 1e3,
        "non_200": {str(k): v for k, v in statuses.items() if k != 200},
        "peak_mib": memory["VmHWM"],
        "stored": stored,
        "acked_total": acked + warm,
        "stats_events": stats.get("events"),
    }


def measure_floor(requests: int, workdir: Path) -> tuple[float, float]:
    """p50 and p99 (ms) of a 1-event batch on one keep-alive connection: the fixed cost of a request."""
    with Receiver(workdir) as receiver:
        conn = http.client.HTTPConnection("127.0.0.1", receiver.port, timeout=60)
        latencies = []
        try:
            for index in range(requests + 3):
                body = orjson.dumps(
                    {"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": [_item()]}
                )
                began = time.perf_counter()
                conn.request("POST", "/audit", body=body, headers=JSON_HEADERS)
                response = conn.getresponse()
                response.read()
                if index >= 3 and response.status == 200:  # the first three warm up
                    latencies.append(time.perf_counter() - began)
        finally:
            conn.close()
        receiver.stop()
        shutil.rmtree(receiver.out, ignore_errors=True)
    return _percentile(latencies, 50) * 1e3, _percentile(latencies, 99) * 1e3


# --- report ----------------------------------------------------------------------------------------------


def _filesystem(path: Path) -> str:
    """The type of the filesystem holding ``path`` (longest mount point in /proc/mounts)."""
    best, kind = "", "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 3 and str(path.resolve()).startswith(parts[1]) and len(parts[1]) > len(best):
                best, kind = parts[1], parts[2]
    return kind


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench receiver", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="~3 s per throughput run instead of ~10 s")
    parser.add_argument("--seconds", type=float, help="seconds per throughput run (overrides --quick)")
    parser.add_argument("--senders", default="1,8", help="concurrent senders per throughput run")
    parser.add_argument("--batch", type=int, default=400, help="events per throughput batch")
    parser.add_argument(
        "--shapes", default=",".join(s.key for s in SHAPES), help="memory shapes to run (empty: none)"
    )
    parser.add_argument("--tmp-dir", type=Path, help="where the receivers write (default: the system's)")
    args = parser.parse_args(argv)
    seconds = args.seconds if args.seconds is not None else (3.0 if args.quick else 10.0)
    wanted = [key for key in args.shapes.split(",") if key]
    unknown = set(wanted) - {s.key for s in SHAPES}
    if unknown:
        parser.error(f"unknown shapes {sorted(unknown)}; choose from {[s.key for s in SHAPES]}")

    workdir = Path(tempfile.mkdtemp(prefix="perfspec-receiver-bench-", dir=args.tmp_dir))
    command = " ".join([".venv/bin/python -m bench receiver", *(argv if argv is not None else sys.argv[1:])])
    print(f"# receiver benchmark — {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}, "
        f"Python {platform.python_version()}; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    print(f"command: {command}")
    print(
        f"receiver: {Path(sys.executable).name} -m perfspec receive --port P --out DIR (defaults: max body "
        f"{MAX_BODY // MiB} MiB, {MAX_ITEMS} items); outputs under {workdir} ({_filesystem(workdir)}), "
        "removed afterwards",
        flush=True,
    )
    try:
        if wanted:
            print("\n## Peak memory per request (fresh receiver each; VmHWM of the receiver process)\n")
            print(
                "| shape | body (MiB) | items | HTTP | reply | idle VmHWM (MiB) | peak VmHWM (MiB) "
                "| peak − idle | RSS after (MiB) | s |"
            )
            print("| --- | ---: | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: |", flush=True)
            worst_accepted = 0.0
            for shape in (s for s in SHAPES if s.key in wanted):
                row = measure_memory(shape, workdir)
                if any(status == 200 for status in row.statuses):
                    worst_accepted = max(worst_accepted, row.peak)
                print(
                    f"| ({shape.key}) {shape.label} | {row.body_mib:.2f}"
                    f"{' ×2' if shape.connections > 1 else ''} | {shape.items} "
                    f"| {' + '.join(str(s) for s in row.statuses)} "
                    f"| {'; '.join(dict.fromkeys(_reply_text(r) for r in row.replies))} "
                    f"| {row.idle:.0f} | {row.peak:.0f} | {row.peak - row.idle:.0f} | {row.rss_after:.0f} "
                    f"| {row.seconds:.2f} |",
                    flush=True,
                )
            verdict = "met" if worst_accepted < 1024 else "NOT met"
            print(
                f"\nworst peak over the accepted (200) requests: {worst_accepted:.0f} MiB "
                f"(target < 1024 MiB: {verdict}); {ISSUE_BEFORE}."
            )
        counts = [int(x) for x in args.senders.split(",") if x]
        if counts:
            template = batch_template(args.batch)
            print(
                f"\n## Throughput: EventList batches of {args.batch} Metadata events "
                f"({len(template) / args.batch:.0f} B/event, {len(template) / 1e3:.0f} kB/batch), "
                f"~{seconds:g} s per run, keep-alive http.client, fsync per batch\n"
            )
            print(
                "| senders | batches | events acked | s | events/s | MB/s | p50 (ms) | p99 (ms) | max (ms) "
                "| non-200 | receiver VmHWM (MiB) | stored = acked |"
            )
            print("| ---: " * 9 + "| --- | ---: | --- |", flush=True)
            for senders in counts:
                r = measure_throughput(senders, seconds, template, workdir)
                errors = ", ".join(f"{k}: {v}" for k, v in r["non_200"].items()) or "0"
                check = (
                    "yes" if r["stored"] == r["acked_total"] else f"NO ({r['stored']}, {r['acked_total']})"
                )
                print(
                    f"| {senders} | {r['batches']:,} | {r['events']:,} | {r['seconds']:.1f} "
                    f"| {r['events_per_s']:,.0f} | {r['mb_per_s']:.1f} | {r['p50_ms']:.1f} "
                    f"| {r['p99_ms']:.1f} | {r['max_ms']:.1f} | {errors} | {r['peak_mib']:.0f} | {check} |",
                    flush=True,
                )
            p50, p99 = measure_floor(50, workdir)
            print(
                f"\nfixed cost of one request (1-event batch, 1 keep-alive sender, 50 requests): "
                f"p50 {p50:.1f} ms, p99 {p99:.1f} ms"
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
