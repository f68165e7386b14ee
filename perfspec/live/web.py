"""The small HTTP server of ``perfspec live --follow``: the same GET routes the receiver serves in
``--listen`` mode (``/predictions``, ``/predictions/<actor>``, ``/metrics``, ``/healthz``).

Why separate and tiny: in follow mode nothing receives events, so there is no receiver to add routes
to; this one only reads. It binds loopback by default; another address needs a token (the receiver's
``PERFSPEC_RECEIVER__TOKEN``), as the receiver's ``/stats`` does.
"""

from __future__ import annotations

import hmac
import http.server
import threading
from collections.abc import Callable
from typing import Any

from perfspec.errors import EnvironmentProblem, InputError

RouteAnswer = tuple[int, str, bytes]
JSON = "application/json"


def parse_address(text: str, flag: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) -> (host, port); InputError naming ``flag`` otherwise."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536 or not host:
        raise InputError(
            f"{flag} {text!r} is not HOST:PORT", hint=f"e.g. {flag} 127.0.0.1:9445 (port 0: any)"
        )
    return host.strip("[]"), int(port)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "perfspec-live"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, code: int, content_type: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if code == 401:
            self.send_header("WWW-Authenticate", 'Bearer realm="perfspec-live"')
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/healthz":
            self._send(200, JSON, b'{"status":"ok"}\n')
            return
        token = self.server.token
        if token:
            scheme, _, given = self.headers.get("Authorization", "").strip().partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
                self._send(401, JSON, b'{"error":"unauthorized"}\n')
                return
        answer = self.server.routes(path)
        if answer is None:
            self._send(
                404,
                JSON,
                b'{"error":"not found","hint":"GET /predictions, /predictions/<actor>, /metrics"}\n',
            )
            return
        self._send(*answer)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    routes: Callable[[str], RouteAnswer | None]
    token: str | None


class ReadServer:
    """``start()`` serves ``routes`` in a thread; ``stop()`` closes it."""

    def __init__(
        self, host: str, port: int, routes: Callable[[str], RouteAnswer | None], token: str | None
    ) -> None:
        try:
            self.server = _Server((host, port), _Handler)
        except OSError as error:
            raise EnvironmentProblem(
                f"cannot listen on {host}:{port}: {error}", hint="pick another --http"
            ) from error
        self.server.routes = routes
        self.server.token = token
        self._thread = threading.Thread(
            target=self.server.serve_forever, name="perfspec-live-http", daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> ReadServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
