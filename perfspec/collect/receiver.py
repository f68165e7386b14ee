"""Audit webhook receiver: the API server's webhook backend POSTs ``EventList`` batches here.

Why it is built this way:
- An acknowledged event is never lost: events go through :class:`JsonlSink` (flush + fsync) before
  the 200; a write error answers 503 so the API server keeps the batch and retries.
- Bad input never stops it: a body over ``max_body_bytes`` gets 413 before it is read, non-JSON or
  non-audit bodies get 400, each counted and set aside in ``receiver-rejects.jsonl``; malformed items
  inside a good batch are set aside while the rest is kept. An item is an event when the cleaner would
  read it as one (``perfspec.audit.readers.event_row``: one definition for both).
- No secret reaches a rejects file: a rejected JSON body or item is stored as the cleaner stores its
  rejects (``perfspec.audit.rejects.redact_raw``: bodies and ``data``/``stringData``/``binaryData``
  redacted, then truncated to 2 KB). A body that is not JSON at all cannot be redacted (no structure;
  it could be a Secret as YAML), so only its length and SHA-256 are kept, never its bytes.
- Bounded memory: at most ``max_connections`` connections (each a thread; more are reset at once, and
  the API server's webhook backend retries a reset connection) and at most ``max_concurrent_requests``
  bodies in memory at a time (others get 503 + ``Retry-After``, which the webhook backend retries).
  Worst case about ``max_concurrent_requests x max_body_bytes x 17`` (the body, its parsed Python
  objects and the output lines; measured on the RequestResponse samples): 2 x 64 MiB x 17 ~ 2.2 GiB
  with the defaults, plus ~64 idle threads. API server batches are far smaller (<= 400 events, ~1 MiB);
  lower ``--max-body`` to bound it further.
- Stdlib only (``http.server`` threads, ``ssl``): binds 127.0.0.1 by default, optional bearer token
  (401) and TLS; ``GET /healthz`` and ``GET /stats``. ``stop()`` finishes in-flight requests, closes
  idle keep-alive connections, then closes the files. The CLI refuses a non-loopback address without
  a token (:func:`check_exposure`); the library itself does not.
- Request/response bodies (present only at the RequestResponse audit level) are dropped by default
  (``drop_bodies``): they may hold Secrets, and nothing downstream reads them.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import http.server
import ipaddress
import os
import socket
import ssl
import struct
import threading
from pathlib import Path
from typing import Any

import orjson

from perfspec.audit.readers import NotAnEvent, event_row
from perfspec.audit.rejects import EVENT_BODY_FIELDS, redact_raw
from perfspec.collect.sink import JsonlSink
from perfspec.errors import EnvironmentProblem, InputError
from perfspec.settings import ReceiverSettings

AUDIT_API_VERSIONS = ("audit.k8s.io/v1", "audit.k8s.io/v1beta1")
REJECT_RAW_CHARS = 2048
REJECTS_NAME = "receiver-rejects.jsonl"
#: Beyond settings.max_concurrent_requests bodies in memory, a POST waits this long, then gets 503.
#: Open connections beyond settings.max_connections (one handler thread each) are reset.
SLOT_WAIT_SECONDS = 0.5
RETRY_AFTER_SECONDS = 1


class BadBatch(ValueError):
    """The body is not an audit EventList/Event; ``doc`` is the parsed body when it was JSON at all."""

    def __init__(self, message: str, doc: Any = None, parsed: bool = True) -> None:
        super().__init__(message)
        self.doc = doc
        self.parsed = parsed


def _show(value: Any) -> str:
    """A short repr of a sender-controlled value for an error message (never a whole document)."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def split_batch(body: bytes) -> tuple[str, list[dict[str, Any]], list[tuple[Any, str]]]:
    """Parse a webhook body into (apiVersion, good events, [(bad item, reason)]). Raises BadBatch."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as error:  # the message holds a position, never the body's text
        raise BadBatch(f"not JSON: {error}", parsed=False) from error
    if not isinstance(doc, dict):
        raise BadBatch("not a JSON object", doc)
    api_version = doc.get("apiVersion")
    if api_version not in AUDIT_API_VERSIONS:
        raise BadBatch(f"apiVersion {_show(api_version)} is not one of {', '.join(AUDIT_API_VERSIONS)}", doc)
    kind = doc.get("kind")
    if kind == "EventList":
        items = doc.get("items")
        if items is None:
            items = []
        if not isinstance(items, list):
            raise BadBatch("EventList.items is not a list", doc)
    elif kind == "Event":
        items = [doc]
    else:
        raise BadBatch(f"kind {_show(kind)} is not EventList or Event", doc)
    good, bad = [], []
    for item in items:
        try:
            event_row(item)  # the cleaner's own "is this an audit Event" test (perfspec.audit.readers)
        except NotAnEvent as error:
            bad.append((item, f"{error.reason}: {error.detail}"))
        else:
            good.append(item)
    return str(api_version), good, bad


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


def event_line(item: dict[str, Any], api_version: str, drop_bodies: bool) -> bytes:
    """One JSON line as the log backend writes it (``kind``/``apiVersion`` first; list items lack them)."""
    event = {"kind": "Event", "apiVersion": item.get("apiVersion") or api_version}
    for key, value in item.items():
        if key in ("kind", "apiVersion") or (drop_bodies and key in EVENT_BODY_FIELDS):
            continue
        event[key] = value
    return orjson.dumps(event)


class _Stats:
    FIELDS = (
        "batches",
        "events",
        "bodies_dropped",
        "rejected_bodies",
        "rejected_items",
        "unauthorized",
        "too_large",
        "length_required",
        "write_errors",
        "busy",
        "refused_connections",
        "connection_errors",
        "bytes_received",
    )

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.values = dict.fromkeys(self.FIELDS, 0)
        self.started_at = dt.datetime.now(dt.UTC).isoformat()

    def add(self, **counts: int) -> None:
        with self._lock:
            for key, value in counts.items():
                self.values[key] += value

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {**self.values, "started_at": self.started_at}


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = False  # server_close() waits for in-flight requests
    block_on_close = True
    allow_reuse_address = True
    receiver: AuditReceiver

    def handle_error(self, request: Any, client_address: Any) -> None:
        self.receiver.stats.add(connection_errors=1)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Start a handler thread unless ``max_connections`` are open: then reset the connection."""
        receiver = self.receiver
        with receiver._conn_lock:
            full = receiver._open_connections >= receiver.max_connections
            if not full:
                receiver._open_connections += 1
        if full:
            receiver.stats.add(refused_connections=1)
            with contextlib.suppress(OSError):  # RST, not FIN: the webhook client retries a reset
                request.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                request.close()
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._closed_one()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._closed_one()

    def _closed_one(self) -> None:
        with self.receiver._conn_lock:
            self.receiver._open_connections -= 1


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the API server reuses its connection
    server_version = "perfspec-receiver"
    server: _Server

    def setup(self) -> None:
        self.timeout = self.server.receiver.settings.request_timeout_seconds
        super().setup()
        if isinstance(self.request, ssl.SSLSocket):
            self.request.do_handshake()
        self.server.receiver._track(self, idle=True)

    def finish(self) -> None:
        self.server.receiver._untrack(self)
        with contextlib.suppress(OSError):
            super().finish()

    def handle_one_request(self) -> None:
        receiver = self.server.receiver
        receiver._track(self, idle=True)
        if receiver.stopping.is_set():
            self.close_connection = True
            return
        try:
            super().handle_one_request()
        finally:
            receiver._track(self, idle=True)
            if receiver.stopping.is_set():
                self.close_connection = True

    def parse_request(self) -> bool:
        self.server.receiver._track(self, idle=False)
        return super().parse_request()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # counts are in /stats; per-request lines would flood the terminal

    def _reply(self, code: int, payload: Any, close: bool = False) -> None:
        body = orjson.dumps(payload) + b"\n"
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
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
        token = self.server.receiver.settings.token
        if not token:
            return True
        header = self.headers.get("Authorization", "")
        return hmac.compare_digest(header.encode(), f"Bearer {token}".encode())

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            self._reply(200, {"status": "ok"})
        elif path == "/stats":
            if not self._authorized():
                self.server.receiver.stats.add(unauthorized=1)
                self._reply(401, {"error": "unauthorized"})
                return
            self._reply(200, self.server.receiver.stats_dict())
        else:
            self._reply(404, {"error": "not found", "hint": "POST audit batches; GET /healthz or /stats"})

    def do_POST(self) -> None:
        receiver = self.server.receiver
        settings = receiver.settings
        if not self._authorized():
            receiver.stats.add(unauthorized=1)
            self._reply(401, {"error": "unauthorized"}, close=True)
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
            self._reply(
                413, {"error": f"body of {length} bytes exceeds {settings.max_body_bytes}"}, close=True
            )
            return
        if not receiver._slots.acquire(timeout=SLOT_WAIT_SECONDS):
            receiver.stats.add(busy=1)  # body unread: the connection cannot be reused
            self._reply(503, {"error": "busy, retry later"}, close=True)
            return
        try:
            self._receive(length)
        finally:
            receiver._slots.release()

    def _receive(self, length: int) -> None:
        receiver = self.server.receiver
        settings = receiver.settings
        body = self.rfile.read(length)
        if len(body) < length:  # client went away mid-body: nothing to acknowledge
            self.close_connection = True
            receiver.stats.add(connection_errors=1)
            return
        receiver.stats.add(bytes_received=length)
        try:
            api_version, good, bad = split_batch(body)
        except BadBatch as error:
            try:
                receiver.reject_body(body, error, self.client_address)
            except OSError as write_error:
                receiver.stats.add(write_errors=1)
                self._reply(503, {"error": f"cannot write rejects: {write_error}"})
                return
            receiver.stats.add(rejected_bodies=1)
            self._reply(400, {"error": str(error)})
            return
        lines = [event_line(item, api_version, settings.drop_bodies) for item in good]
        try:
            receiver.sink.write_batch(lines)
            for item, reason in bad:
                receiver.reject_item(item, reason, self.client_address)
        except OSError as error:
            receiver.stats.add(write_errors=1)
            self._reply(503, {"error": f"cannot write events: {error}"})
            return
        dropped = (
            sum(1 for item in good for key in EVENT_BODY_FIELDS if key in item) if settings.drop_bodies else 0
        )
        receiver.stats.add(batches=1, events=len(lines), rejected_items=len(bad), bodies_dropped=dropped)
        self._reply(200, {"accepted": len(lines), "rejected": len(bad)})


class AuditReceiver:
    """The webhook server writing into ``out_dir``. ``start()`` serves in a thread; ``stop()`` drains."""

    def __init__(
        self,
        out_dir: Path,
        settings: ReceiverSettings,
        *,
        max_concurrent_requests: int | None = None,
        max_connections: int | None = None,
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
        self.stats = _Stats()
        self.stopping = threading.Event()
        self._slots = threading.BoundedSemaphore(max_concurrent_requests)
        self._open_connections = 0
        self._connections: dict[_Handler, bool] = {}
        self._conn_lock = threading.Lock()
        self._reject_lock = threading.Lock()
        self._thread: threading.Thread | None = None
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
        self.sink = JsonlSink(self.out_dir, settings.rotate_bytes, prefix="audit")

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
        scheme = "https" if isinstance(self.server.socket, ssl.SSLSocket) else "http"
        return f"{scheme}://{host}:{port}"

    def _track(self, handler: _Handler, idle: bool) -> None:
        with self._conn_lock:
            self._connections[handler] = idle

    def _untrack(self, handler: _Handler) -> None:
        with self._conn_lock:
            self._connections.pop(handler, None)

    def reject_body(self, body: bytes, error: BadBatch, client: Any) -> None:
        """Set a 400 body aside: redacted and truncated when it is JSON; only size + SHA-256 when not."""
        self._reject(
            {
                "reason": str(error),
                "bytes": len(body),
                "sha256": hashlib.sha256(body).hexdigest(),
                "raw": redact_raw(error.doc, REJECT_RAW_CHARS) if error.parsed else None,
            },
            client,
        )

    def reject_item(self, item: Any, reason: str, client: Any) -> None:
        """Set a malformed item of a good batch aside, redacted and truncated."""
        self._reject({"reason": reason, "raw": redact_raw(item, REJECT_RAW_CHARS)}, client)

    def _reject(self, fields: dict[str, Any], client: Any) -> None:
        """Append one reject row, fsync'd like the events."""
        row = {
            "at": dt.datetime.now(dt.UTC).isoformat(),
            "client": str(client[0]) if client else None,
            **fields,
        }
        with self._reject_lock, open(self.out_dir / REJECTS_NAME, "ab") as handle:
            handle.write(orjson.dumps(row) + b"\n")
            handle.flush()
            os.fsync(handle.fileno())

    def stats_dict(self) -> dict[str, Any]:
        return {
            **self.stats.snapshot(),
            "current_file": self.sink.current_name,
            "out_dir": str(self.out_dir),
            "files": list(self.sink.files_written),
        }

    def start(self) -> AuditReceiver:
        self._thread = threading.Thread(target=self.server.serve_forever, name="audit-receiver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> dict[str, Any]:
        """Stop accepting, let in-flight requests finish, close idle connections and the files."""
        self.stopping.set()
        self.server.shutdown()
        with self._conn_lock:
            idle = [h for h, is_idle in self._connections.items() if is_idle]
        for handler in idle:
            with contextlib.suppress(OSError):
                handler.connection.shutdown(socket.SHUT_RDWR)
        self.server.server_close()  # joins the handler threads
        if self._thread is not None:
            self._thread.join()
        self.sink.close()
        return self.stats_dict()
