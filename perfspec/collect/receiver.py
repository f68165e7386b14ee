"""Audit webhook receiver: the API server's webhook backend POSTs ``EventList`` batches here.

Why it is built this way:
- An acknowledged event is never lost: events go through :class:`JsonlSink` (one write + fsync)
  before the 200; a write error answers 503 (the API server keeps the batch and retries) and the sink
  first cuts the file back to its last acknowledged size, so a torn write never spoils the next batch.
- It acknowledges only what ``clean`` keeps: items are judged by the cleaner's own rule
  (``collect.intake``); the others are set aside in ``receiver-rejects.jsonl`` (one write per request,
  at most ``max_rejects_per_request`` recorded, the rest counted), and the reply says how many of each.
- No secret reaches a rejects file: samples are redacted as the cleaner redacts its rejects
  (``audit.redaction``). A body that is not JSON cannot be redacted (it could be a Secret as
  YAML), so only its length and SHA-256 are kept.
- Bounded memory, whatever the body's shape: bodies over ``max_body_bytes`` get 413 before they are
  read, and over ``max_batch_items`` items 413 before any per-item work; bodies are read into a shared
  budget (``max_buffered_bytes``, one client at most half) and processed ``max_concurrent_requests``
  at a time, as raw slices (``intake``: ~2-3x the body, never the ~100x of parsed Python objects).
  Measured peaks are in ``bench/RESULTS.md`` (``python -m bench receiver``).
- Slow or hostile senders cannot lock others out: every request must deliver its headers and body
  within ``request_timeout_seconds``, and a body each 64 KiB within a few seconds
  (``min_body_bytes_per_second``; a watchdog closes it otherwise); one address holds at most
  ``max_connections_per_client`` of the ``max_connections`` connections, and at the cap the address
  holding the most gives up its oldest incomplete connection for a newcomer; a body being received
  holds only the bytes it has sent, never a processing slot.
- A local web page cannot inject events: POSTs need ``Content-Type: application/json`` (415) on the
  configured ``path`` (404), and CORS preflights are refused (405, no CORS headers).
- Stdlib only (``http.server`` threads, ``ssl``): binds 127.0.0.1 by default, optional bearer token
  (401; the scheme is case-insensitive) and TLS; ``GET /healthz`` and ``GET /stats``. ``stop()``
  finishes in-flight requests, closes idle keep-alive connections, then closes the files. The CLI
  refuses a non-loopback address without a token (:func:`check_exposure`); the library does not.
- Request/response bodies (present only at the RequestResponse audit level) are dropped by default
  (``drop_bodies``): they may hold Secrets, and nothing downstream reads them.
- Optional consumers never weaken any of this: ``on_accepted`` (the live predictor) is called with the
  rows of a batch only after its events are written and fsynced and before the 200, must return at once
  (it hands them to a queue), and an error it raises is counted (``hook_errors``), never answered;
  ``routes`` adds GET paths (``/predictions``, ``/metrics``) behind the same token as ``/stats``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hmac
import http.server
import ipaddress
import os
import socket
import ssl
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from perfspec.audit.readers import Row
from perfspec.collect.intake import BadBatch, TooManyItems, body_digest, take_batch, warm_up
from perfspec.collect.sink import JsonlSink
from perfspec.errors import EnvironmentProblem, InputError
from perfspec.fileio import ensure_writable_dir
from perfspec.settings import CleanSettings, ReceiverSettings

REJECTS_NAME = "receiver-rejects.jsonl"
#: A POST waits this long for room in the body budget or for a processing slot, then gets 503.
SLOT_WAIT_SECONDS = 0.5
#: A body fully read waits longer for a processing slot (answering 503 would waste the transfer).
PROCESS_WAIT_SECONDS = 5.0
RETRY_AFTER_SECONDS = 1
#: Bodies are read in chunks of this size, each reserved in the budget before it is read (small: a
#: stalled sender holds at most one chunk it has not sent, and its progress is visible to the watchdog).
READ_CHUNK = 64 << 10
#: Each chunk of a body must arrive within this plus READ_CHUNK / ``min_body_bytes_per_second`` seconds.
BODY_RATE_GRACE_SECONDS = 2.0
#: How often the watchdog looks for requests past their deadline.
WATCHDOG_INTERVAL = 0.25
#: An extra GET route's answer: (status, content type, body).
RouteAnswer = tuple[int, str, bytes]


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``; any other name or address counts as exposed."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(settings: ReceiverSettings, insecure: bool = False) -> list[str]:
    """Warnings about how the receiver would be reachable; raises InputError for a non-loopback address
    without a token unless ``insecure`` (anyone who can reach it could then write events)."""
    host = settings.host
    if is_loopback(host):
        return []
    where = host or "every interface"
    if not settings.token:
        if not insecure:
            raise InputError(
                f"refusing to listen on {where} without a token: anyone who can reach the port could "
                "write audit events into the campaign",
                hint="pass --token (or set PERFSPEC_RECEIVER__TOKEN) with --tls-cert/--tls-key, "
                "bind 127.0.0.1, or pass --insecure to accept the risk",
            )
        return [f"warning: listening on {where} with no token (--insecure): anyone who can reach it can "
                "write events and read /stats"]  # fmt: skip
    if settings.tls_cert is None:
        return [f"warning: listening on {where} over plain HTTP: the token and the events cross the "
                "network in clear text; add --tls-cert/--tls-key"]  # fmt: skip
    return []


class _Stats:
    FIELDS = (
        "batches",
        "events",
        "bodies_dropped",
        "rejected_bodies",
        "rejected_items",
        "unrecorded_rejects",
        "unauthorized",
        "not_found",
        "unsupported_media_type",
        "too_large",
        "too_many_items",
        "length_required",
        "write_errors",
        "undone_writes",
        "internal_errors",
        "busy",
        "timeouts",
        "refused_connections",
        "evicted_connections",
        "connection_errors",
        "bytes_received",
        "hook_errors",
    )

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.values = dict.fromkeys(self.FIELDS, 0)
        self.started_at = dt.datetime.now(dt.UTC).isoformat()
        self.last_error: str | None = None

    def add(self, **counts: int) -> None:
        with self._lock:
            for key, value in counts.items():
                self.values[key] += value

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {**self.values, "started_at": self.started_at, "last_error": self.last_error}


class _Budget:
    """Bytes of bodies being received at once, in total and per client address (half the total).

    Why: a body is read before it takes a processing slot, so a sender trickling it in blocks nobody;
    each chunk is reserved before it is read, so such a sender holds only the bytes it has sent.
    """

    def __init__(self, total: int) -> None:
        self.total = total
        self.per_client = max(total // 2, 1)
        self.used = 0
        self.by_client: Counter[str] = Counter()
        self._cond = threading.Condition()

    def reserve(self, client: str, size: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.used + size > self.total or self.by_client[client] + size > self.per_client:
                left = deadline - time.monotonic()
                if left <= 0 or size > self.per_client:
                    return False
                self._cond.wait(left)
            self.used += size
            self.by_client[client] += size
            return True

    def release(self, client: str, size: int) -> None:
        if size <= 0:
            return
        with self._cond:
            self.used -= size
            self.by_client[client] -= size
            if self.by_client[client] <= 0:
                del self.by_client[client]
            self._cond.notify_all()


class _Connection:
    """What the receiver knows of one open connection: idle between requests; while a request has not
    arrived whole, its deadline and when it began; the body's progress; whether it is being evicted."""

    __slots__ = ("body_progress", "deadline", "evicted", "idle", "since")

    def __init__(self) -> None:
        self.idle = True
        self.deadline: float | None = None
        self.since = time.monotonic()
        self.body_progress: float | None = None  # when the body last moved (None: not in a body)
        self.evicted = False


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = False  # server_close() waits for in-flight requests
    block_on_close = True
    allow_reuse_address = True
    receiver: AuditReceiver

    def handle_error(self, _request: Any, _client_address: Any) -> None:
        self.receiver.stats.add(connection_errors=1)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Start a handler thread unless the connection caps are reached: then reset the connection."""
        if not self.receiver.admit(client_address):
            with contextlib.suppress(OSError):  # RST, not FIN: the webhook client retries a reset
                request.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                request.close()
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.receiver.release(client_address)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.receiver.release(client_address)


def _media_type(header: str) -> str:
    return header.split(";", 1)[0].strip().lower()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the API server reuses its connection
    server_version = "perfspec-receiver"
    server: _Server

    def setup(self) -> None:
        self.receiver = self.server.receiver
        self.receiver.track(self)
        # a per-connection socket timeout: what StreamRequestHandler.setup applies from its `timeout`
        # class attribute (left None here), set from this receiver's settings
        self.request.settimeout(self.receiver.settings.request_timeout_seconds)
        super().setup()
        # the reply's headers and body are two sends: without this, Nagle + delayed ACK add ~40 ms each
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if isinstance(self.request, ssl.SSLSocket):
            self.request.do_handshake()

    def finish(self) -> None:
        self.receiver.untrack(self)
        with contextlib.suppress(OSError):
            super().finish()

    def handle_one_request(self) -> None:
        receiver = self.receiver
        receiver.waiting(self)  # the deadline for the next request's headers and body starts now
        if receiver.stopping.is_set():
            self.close_connection = True
            return
        try:
            super().handle_one_request()
        finally:
            receiver.waiting(self, deadline=False)
            if receiver.stopping.is_set():
                self.close_connection = True

    def parse_request(self) -> bool:
        self.receiver.busy(self)
        return super().parse_request()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # counts are in /stats; per-request lines would flood the terminal

    def _reply(self, code: int, payload: Any, close: bool = False) -> None:
        self._send(code, "application/json", orjson.dumps(payload) + b"\n", close)

    def _send(self, code: int, content_type: str, body: bytes, close: bool = False) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if code == 401:
            self.send_header("WWW-Authenticate", 'Bearer realm="perfspec-receiver"')
        if code == 503:  # with Retry-After the API server's webhook backend retries the batch
            self.send_header("Retry-After", str(RETRY_AFTER_SECONDS))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def _authorized(self) -> bool:
        token = self.receiver.settings.token
        if not token:
            return True
        scheme, _, credentials = self.headers.get("Authorization", "").strip().partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            credentials.strip().encode(), token.encode()
        )

    def do_GET(self) -> None:
        self.receiver.waiting(self, deadline=False)
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            self._reply(200, {"status": "ok"})
        elif path == "/stats":
            if not self._authorized():
                self.receiver.stats.add(unauthorized=1)
                self._reply(401, {"error": "unauthorized"})
                return
            self._reply(200, self.receiver.stats_dict())
        elif self.receiver.routes is not None and (answer := self._route(path)) is not None:
            self._send(*answer)
        else:
            self.receiver.stats.add(not_found=1)
            self._reply(404, {"error": "not found", "hint": "GET /healthz or /stats"})

    def _route(self, path: str) -> RouteAnswer | None:
        """An extra route's answer (401 without the token); None when no route takes ``path``."""
        assert self.receiver.routes is not None
        if not self._authorized():
            self.receiver.stats.add(unauthorized=1)
            return 401, "application/json", b'{"error":"unauthorized"}\n'
        return self.receiver.routes(path)

    def do_OPTIONS(self) -> None:
        """CORS preflights are refused: no page in a browser may POST here (no Allow-Origin is sent)."""
        self._reply(405, {"error": "method not allowed"}, close=True)

    def do_POST(self) -> None:
        receiver = self.receiver
        settings = receiver.settings
        if self.path.split("?", 1)[0] != settings.path:
            receiver.stats.add(not_found=1)
            self._reply(404, {"error": "not found", "hint": f"POST audit batches to {settings.path}"}, True)
            return
        if not self._authorized():
            receiver.stats.add(unauthorized=1)
            self._reply(401, {"error": "unauthorized"}, close=True)
            return
        if _media_type(self.headers.get("Content-Type", "")) != "application/json":
            receiver.stats.add(unsupported_media_type=1)
            self._reply(415, {"error": "Content-Type must be application/json"}, close=True)
            return
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            receiver.stats.add(length_required=1)
            self._reply(411, {"error": "Content-Length required"}, close=True)
            return
        try:
            length = int(self.headers.get("Content-Length", ""))
            if length < 0:
                raise ValueError
        except ValueError:
            receiver.stats.add(length_required=1)
            self._reply(411, {"error": "Content-Length required"}, close=True)
            return
        if length > settings.max_body_bytes:
            receiver.stats.add(too_large=1)
            self._reply(413, {"error": f"body of {length} bytes exceeds {settings.max_body_bytes}"}, True)
            return
        client = str(self.client_address[0])
        reserved = 0
        try:
            body, reserved = self._read_body(length, client)
            receiver.waiting(self, deadline=False)
            if body is None:
                return
            if not receiver.slots.acquire(timeout=PROCESS_WAIT_SECONDS):
                receiver.stats.add(busy=1)
                self._reply(503, {"error": "busy, retry later"})
                return
            try:
                self._process(body)
            finally:
                receiver.slots.release()
        except Exception as error:  # never a dying thread and an empty reply: one line, counted
            receiver.internal_error(error)
            self._reply(500, {"error": f"internal error: {type(error).__name__}: {error}"}, close=True)
        finally:
            receiver.budget.release(client, reserved)

    def _read_body(self, length: int, client: str) -> tuple[bytes | None, int]:
        """The body, read chunk by chunk into the budget; None when it could not be read (answered)."""
        receiver = self.receiver
        chunks: list[bytes] = []
        reserved = 0
        receiver.body_progress(self)  # the body's clock starts now
        while reserved < length:
            size = min(READ_CHUNK, length - reserved)
            if not receiver.budget.reserve(client, size, SLOT_WAIT_SECONDS):
                receiver.stats.add(busy=1)  # body not fully read: the connection cannot be reused
                self._reply(503, {"error": "busy, retry later"}, close=True)
                return None, reserved
            reserved += size
            try:
                chunk = self.rfile.read(size)
            except TimeoutError:  # silent for request_timeout_seconds: nothing to acknowledge
                self.close_connection = True
                receiver.stats.add(timeouts=1)
                return None, reserved
            chunks.append(chunk)
            receiver.body_progress(self)
            if len(chunk) < size:  # client went away or missed its deadline: nothing to acknowledge
                self.close_connection = True
                receiver.stats.add(connection_errors=1)
                return None, reserved
        receiver.stats.add(bytes_received=length)
        return b"".join(chunks), reserved

    def _process(self, body: bytes) -> None:
        receiver = self.receiver
        settings = receiver.settings
        try:
            intake = take_batch(
                body,
                drop_bodies=settings.drop_bodies,
                max_items=settings.max_batch_items,
                max_rejects=settings.max_rejects_per_request,
                max_line_bytes=receiver.max_line_bytes,
            )
        except TooManyItems as error:
            receiver.stats.add(too_many_items=1)
            self._reply(413, {"error": str(error)})
            return
        except BadBatch as error:
            record = {
                "reason": str(error),
                "bytes": len(body),
                "sha256": body_digest(body),
                "raw": error.sample,
            }
            try:
                receiver.write_rejects([record], self.client_address)
            except OSError as write_error:
                receiver.write_failed(write_error)
                self._reply(503, {"error": f"cannot write rejects: {write_error}"})
                return
            receiver.stats.add(rejected_bodies=1)
            self._reply(400, {"error": str(error)})
            return
        try:
            receiver.sink.write(intake.data)
            receiver.write_rejects(intake.rejects, self.client_address)
        except OSError as error:
            receiver.write_failed(error)
            self._reply(503, {"error": f"cannot write events: {error}"})
            return
        receiver.hand_over(intake.rows)
        receiver.stats.add(
            batches=1,
            events=intake.accepted,
            rejected_items=intake.rejected,
            unrecorded_rejects=intake.rejected - len(intake.rejects),
            bodies_dropped=intake.bodies_dropped,
        )
        self._reply(
            200,
            {
                "accepted": intake.accepted,
                "rejected": intake.rejected,
                "rejects_recorded": len(intake.rejects),
            },
        )


class AuditReceiver:
    """The webhook server writing into ``out_dir``. ``start()`` serves in a thread; ``stop()`` drains."""

    def __init__(
        self,
        out_dir: Path,
        settings: ReceiverSettings,
        *,
        max_concurrent_requests: int | None = None,
        max_connections: int | None = None,
        max_line_bytes: int | None = None,
        on_accepted: Callable[[list[Row]], None] | None = None,
        routes: Callable[[str], RouteAnswer | None] | None = None,
    ) -> None:
        if max_concurrent_requests is None:
            max_concurrent_requests = settings.max_concurrent_requests
        if max_connections is None:
            max_connections = settings.max_connections
        if max_concurrent_requests < 1 or max_connections < 1:
            raise InputError("max_concurrent_requests and max_connections must be at least 1")
        self.out_dir = Path(out_dir)
        self.settings = settings
        self.max_connections = max_connections
        #: Clean's line limit: a longer event would be acknowledged here and rejected by clean.
        self.max_line_bytes = max_line_bytes or CleanSettings().max_line_bytes
        self.on_accepted = on_accepted
        self.routes = routes
        self.stats = _Stats()
        self.stopping = threading.Event()
        self.slots = threading.BoundedSemaphore(max_concurrent_requests)
        self.budget = _Budget(settings.max_buffered_bytes)
        self._open_connections = 0
        self._evicting = 0
        self._per_client: Counter[str] = Counter()
        self._connections: dict[_Handler, _Connection] = {}
        self._conn_lock = threading.Lock()
        self._reject_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._watchdog: threading.Thread | None = None
        self.sink = self._open_sink()
        context = self._tls_context()
        try:
            self.server = _Server((settings.host, settings.port), _Handler, bind_and_activate=True)
        except OSError as error:
            raise EnvironmentProblem(
                f"cannot listen on {settings.host}:{settings.port}: {error}", hint="pick another --port"
            ) from error
        self.server.receiver = self
        if context is not None:
            self.server.socket = context.wrap_socket(
                self.server.socket, server_side=True, do_handshake_on_connect=False
            )

    def _open_sink(self) -> JsonlSink:
        """The output folder, checked writable now rather than at the first batch."""
        try:
            ensure_writable_dir(self.out_dir)
            sink = JsonlSink(self.out_dir, self.settings.rotate_bytes, prefix="audit")
        except OSError as error:
            raise EnvironmentProblem(
                f"cannot write audit events into {self.out_dir}: {error.strerror or error}",
                hint="pass an --out folder you can write to, on a disk with free space",
            ) from error
        return sink

    def _tls_context(self) -> ssl.SSLContext | None:
        cert, key = self.settings.tls_cert, self.settings.tls_key
        if cert is None and key is None:
            return None
        if cert is None or key is None:
            raise InputError("TLS needs both --tls-cert and --tls-key")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(str(cert), str(key))
        except (OSError, ssl.SSLError) as error:
            raise InputError(f"cannot load TLS certificate {cert} / key {key}: {error}") from error
        return context

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        if not isinstance(host, str):  # the bound address (getsockname) always has a str host
            raise RuntimeError(f"the receiver's address has an unexpected host {host!r}")
        scheme = "https" if isinstance(self.server.socket, ssl.SSLSocket) else "http"
        return f"{scheme}://{host}:{port}"

    @property
    def post_url(self) -> str:
        """Where the webhook kubeconfig must point (``url`` + the configured path)."""
        return self.url + self.settings.path

    # -- connections ---------------------------------------------------------------------------------
    def admit(self, client_address: Any) -> bool:
        """Count a new connection, unless its address's cap is reached (then False). At the total cap,
        an address holding at least 2 more connections than the newcomer's gives up its oldest
        incomplete one (a slow or idle sender), so one busy address cannot starve another; if there is
        none, the new connection is refused."""
        client = str(client_address[0])
        victim: _Handler | None = None
        with self._conn_lock:
            admitted = self._per_client[client] < self.settings.max_connections_per_client
            if admitted and self._open_connections - self._evicting >= self.max_connections:
                victim = self._eviction_victim(self._per_client[client])
                admitted = victim is not None
                if victim is not None:
                    self._connections[victim].evicted = True
                    self._evicting += 1
            if admitted:
                self._open_connections += 1
                self._per_client[client] += 1
        if victim is not None:
            self.stats.add(evicted_connections=1)
            with contextlib.suppress(OSError):
                victim.connection.shutdown(socket.SHUT_RDWR)
        if not admitted:
            self.stats.add(refused_connections=1)
        return admitted

    def _eviction_victim(self, newcomer_holds: int) -> _Handler | None:
        """(Lock held.) The oldest incomplete connection of the address holding the most connections,
        if it holds at least 2 more than the newcomer's address."""
        incomplete: dict[str, list[tuple[float, int, _Handler]]] = {}
        for handler, state in self._connections.items():
            if state.deadline is not None and not state.evicted:
                address = str(handler.client_address[0])
                incomplete.setdefault(address, []).append((state.since, id(handler), handler))
        if not incomplete:
            return None
        busiest = max(incomplete, key=lambda address: self._per_client[address])
        if self._per_client[busiest] < newcomer_holds + 2:
            return None
        return min(incomplete[busiest])[2]

    def release(self, client_address: Any) -> None:
        client = str(client_address[0])
        with self._conn_lock:
            self._open_connections -= 1
            self._per_client[client] -= 1
            if self._per_client[client] <= 0:
                del self._per_client[client]

    def track(self, handler: _Handler) -> None:
        with self._conn_lock:
            self._connections[handler] = _Connection()

    def untrack(self, handler: _Handler) -> None:
        with self._conn_lock:
            state = self._connections.pop(handler, None)
            if state is not None and state.evicted:
                self._evicting -= 1

    def waiting(self, handler: _Handler, deadline: bool = True) -> None:
        """Idle between requests: with ``deadline``, the next request must arrive whole in time."""
        with self._conn_lock:
            state = self._connections.get(handler)
            if state is not None:
                state.idle = True
                state.since = time.monotonic()
                state.deadline = state.since + self.settings.request_timeout_seconds if deadline else None
                state.body_progress = None

    def body_progress(self, handler: _Handler) -> None:
        """The body moved: a chunk arrived, or (the first call) it starts now."""
        with self._conn_lock:
            state = self._connections.get(handler)
            if state is not None:
                state.body_progress = time.monotonic()

    def busy(self, handler: _Handler) -> None:
        with self._conn_lock:
            state = self._connections.get(handler)
            if state is not None:
                state.idle = False

    def _too_slow(self, state: _Connection, now: float) -> bool:
        """A request past its deadline, or a body whose next chunk is overdue at the minimum rate
        (a burst then a stall is caught within seconds, not at the deadline)."""
        if state.deadline is None:
            return False
        if state.deadline < now:
            return True
        rate = self.settings.min_body_bytes_per_second
        if state.body_progress is None or rate <= 0:
            return False
        return now - state.body_progress > BODY_RATE_GRACE_SECONDS + READ_CHUNK / rate

    def _watch(self) -> None:
        """Close connections whose request has not arrived whole within ``request_timeout_seconds``, or
        whose body arrives slower than ``min_body_bytes_per_second`` (after a short grace)."""
        while not self.stopping.wait(WATCHDOG_INTERVAL):
            now = time.monotonic()
            with self._conn_lock:
                late = [h for h, state in self._connections.items() if self._too_slow(state, now)]
                for handler in late:
                    self._connections[handler].deadline = None
            for handler in late:
                self.stats.add(timeouts=1)
                with contextlib.suppress(OSError):
                    handler.connection.shutdown(socket.SHUT_RDWR)

    # -- outputs -------------------------------------------------------------------------------------
    def write_rejects(self, records: list[dict[str, Any]], client: Any) -> None:
        """Append a request's reject records with one write and one fsync."""
        if not records:
            return
        at = dt.datetime.now(dt.UTC).isoformat()
        where = str(client[0]) if client else None
        data = b"".join(orjson.dumps({"at": at, "client": where, **record}) + b"\n" for record in records)
        with self._reject_lock:
            fd = os.open(
                self.out_dir / REJECTS_NAME, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644
            )
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)

    def hand_over(self, rows: list[Row]) -> None:
        """Give a batch's rows, already durable, to ``on_accepted``; its failure never reaches the reply."""
        if self.on_accepted is None or not rows:
            return
        try:
            self.on_accepted(rows)
        except Exception as error:  # a consumer's bug must not cost the batch its 200
            self.stats.add(hook_errors=1)
            self.stats.last_error = f"on_accepted: {type(error).__name__}: {error}"

    def write_failed(self, error: OSError) -> None:
        self.stats.add(write_errors=1)
        self.stats.last_error = f"write failed: {error}"

    def internal_error(self, error: Exception) -> None:
        self.stats.add(internal_errors=1)
        self.stats.last_error = f"{type(error).__name__}: {error}"

    def stats_dict(self) -> dict[str, Any]:
        return {
            **self.stats.snapshot(),
            "undone_writes": self.sink.undone_writes,
            "current_file": self.sink.current_name,
            "out_dir": str(self.out_dir),
            "files": list(self.sink.files_written),
        }

    def start(self) -> AuditReceiver:
        # pyarrow imports pandas on its first array (~1 s): done now, beside serving, not in a request
        threading.Thread(target=warm_up, name="audit-receiver-warm-up", daemon=True).start()
        self._thread = threading.Thread(target=self.server.serve_forever, name="audit-receiver", daemon=True)
        self._thread.start()
        self._watchdog = threading.Thread(target=self._watch, name="audit-receiver-watchdog", daemon=True)
        self._watchdog.start()
        return self

    def stop(self) -> dict[str, Any]:
        """Stop accepting, let in-flight requests finish, close idle connections and the files."""
        self.stopping.set()
        self.server.shutdown()
        with self._conn_lock:
            idle = [h for h, state in self._connections.items() if state.idle]
        for handler in idle:
            with contextlib.suppress(OSError):
                handler.connection.shutdown(socket.SHUT_RDWR)
        self.server.server_close()  # joins the handler threads
        if self._thread is not None:
            self._thread.join()
        if self._watchdog is not None:
            self._watchdog.join()
        self.sink.close()
        return self.stats_dict()
