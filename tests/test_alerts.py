"""Someone is told (issue 12): a failed pipeline run posts exactly one JSON message to the configured
webhook; an unreachable webhook never masks the run's own error or hangs it."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from perfspec.alerts import FIELDS, alert_message, post_alert
from perfspec.errors import InputError
from perfspec.settings import get_settings
from tests import prefect_harness


class _Inbox(BaseHTTPRequestHandler):
    received: ClassVar[list[dict]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_: object) -> None:
        return None


@pytest.fixture()
def inbox() -> Iterator[tuple[str, list[dict]]]:
    """A real HTTP server on loopback that keeps what it receives."""
    handler = type("Inbox", (_Inbox,), {"received": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", handler.received
    server.shutdown()
    server.server_close()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_message_holds_every_field_and_only_the_errors_first_line() -> None:
    message = alert_message(
        flow="pipeline",
        run_name="clever-fox",
        state="Failed",
        error="step 'clean' failed\n" + "x" * 5000,
        prefect_run_url=None,
        mlflow="sqlite:///m.db",
        at="2026-11-29T10:00:00+00:00",
    )
    assert tuple(message) == FIELDS and message["error"] == "step 'clean' failed"


def test_post_delivers_and_an_unreachable_webhook_is_a_reason_not_an_exception(inbox) -> None:
    url, received = inbox
    assert post_alert(url, {"a": 1}) is None and received == [{"a": 1}]
    began = time.monotonic()
    problem = post_alert(f"http://127.0.0.1:{_closed_port()}/hook", {"a": 1}, timeout=2)
    assert problem is not None and problem.startswith("webhook not reached")
    assert time.monotonic() - began < 2.5


@pytest.fixture(scope="module")
def harness(request: pytest.FixtureRequest) -> Path:
    return prefect_harness.start(request)


@pytest.mark.usefixtures("harness")
def test_a_failed_pipeline_run_sends_exactly_one_alert(inbox, tmp_path: Path) -> None:
    from flows.pipeline import pipeline

    url, received = inbox
    junk = tmp_path / "not-an-audit-log.jsonl"
    junk.write_text("hello\nthis is not json\n")
    os.environ["PERFSPEC_PREFECT__ALERT_WEBHOOK_URL"] = url
    get_settings.cache_clear()
    try:
        with pytest.raises(InputError):
            pipeline(sources=[str(junk)], epochs=1, data_dir=tmp_path / "data")
    finally:
        os.environ.pop("PERFSPEC_PREFECT__ALERT_WEBHOOK_URL")
        get_settings.cache_clear()
    assert len(received) == 1, received  # the failing prepare subflow has no hook of its own
    [message] = received
    assert message["flow"] == "pipeline" and message["state"] == "Failed"
    assert "clean-audit-logs" in message["error"] and message["run_name"]
    assert message["mlflow"].startswith("sqlite:///")


@pytest.mark.usefixtures("harness")
def test_no_webhook_configured_sends_nothing(inbox, tmp_path: Path) -> None:
    from flows.pipeline import pipeline

    _url, received = inbox
    with pytest.raises(InputError):
        pipeline(sources=[str(tmp_path / "missing.jsonl")], data_dir=tmp_path / "data")
    assert received == []
