"""The audit webhook receiver, for real over loopback HTTP(S), fed with real events from ../shared/data."""

from __future__ import annotations

import copy
import datetime as dt
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from perfspec.collect.receiver import REJECTS_NAME, AuditReceiver, check_exposure, is_loopback
from perfspec.errors import InputError
from perfspec.settings import ReceiverSettings
from tests.collect.conftest import REPO_ROOT, read_jsonl

JSON = {"Content-Type": "application/json"}


def event_lists(events: list[dict[str, Any]], batch: int) -> list[dict[str, Any]]:
    """EventList bodies as the webhook backend sends them: items without kind/apiVersion, one version each."""
    bodies = []
    for version in ("audit.k8s.io/v1", "audit.k8s.io/v1beta1"):
        items = [
            {k: v for k, v in e.items() if k not in ("kind", "apiVersion")}
            for e in events
            if e.get("apiVersion", "audit.k8s.io/v1") == version
        ]
        for start in range(0, len(items), batch):
            bodies.append({"kind": "EventList", "apiVersion": version, "items": items[start : start + batch]})
    return bodies


def fresh_ids(body: dict[str, Any]) -> dict[str, Any]:
    body = copy.deepcopy(body)
    for item in body["items"]:
        item["auditID"] = str(uuid.uuid4())
    return body


@pytest.mark.slow
def test_concurrent_batches_every_acknowledged_event_on_disk_exactly_once(
    receiver: Any,
    sample_events: list[dict[str, Any]],
    tmp_path: Path,
    shared_data: Path,  # noqa: ARG001 - needs the corpus with both audit API versions
) -> None:
    r = receiver(rotate_bytes=40_000, limits={"max_concurrent_requests": 8})  # no 503s here
    bodies = [fresh_ids(b) for _ in range(6) for b in event_lists(sample_events, batch=7)]
    acknowledged: list[str] = []
    lock = threading.Lock()

    def post(body: dict[str, Any]) -> None:
        with httpx.Client(base_url=r.url, timeout=30) as client:
            response = client.post(
                "/audit", content=json.dumps(body), headers={"Content-Type": "application/json"}
            )
            assert response.status_code == 200, response.text
            assert response.json() == {"accepted": len(body["items"]), "rejected": 0, "rejects_recorded": 0}
            with lock:
                acknowledged.extend(i["auditID"] for i in body["items"])

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(post, bodies))
    stats = r.stop()
    stored = read_jsonl(tmp_path / "out")
    ids = [e["auditID"] for e in stored]
    assert sorted(ids) == sorted(acknowledged) and len(set(ids)) == len(ids)
    assert stats["events"] == len(acknowledged) and stats["batches"] == len(bodies)
    files = sorted(p.name for p in (tmp_path / "out").glob("audit-*.jsonl"))
    assert len(files) > 3 and files[0] == "audit-000001.jsonl"  # rotated by size
    by_id = {e["auditID"]: e for e in stored}
    for body in bodies[:5]:
        for item in body["items"]:
            event = by_id[item["auditID"]]
            assert event["kind"] == "Event" and event["apiVersion"] == body["apiVersion"]
            assert {k: v for k, v in event.items() if k not in ("kind", "apiVersion")} == {
                k: v for k, v in item.items() if k not in ("requestObject", "responseObject")
            }
    assert {e["apiVersion"] for e in stored} == {"audit.k8s.io/v1", "audit.k8s.io/v1beta1"}


def test_bodies_are_dropped_by_default_and_kept_on_request(
    receiver: Any,
    sample_events: list[dict[str, Any]],
    tmp_path: Path,
    shared_data: Path,  # noqa: ARG001 - needs the corpus with RequestResponse events
) -> None:
    with_bodies = [e for e in sample_events if "requestObject" in e or "responseObject" in e]
    assert with_bodies, "the samples include RequestResponse events"
    body = {"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": with_bodies}
    r = receiver()
    assert httpx.post(r.post_url, json=body).status_code == 200
    stats = r.stop()
    stored = read_jsonl(tmp_path / "out")
    assert len(stored) == len(with_bodies) and stats["bodies_dropped"] >= len(with_bodies)
    assert not any("requestObject" in e or "responseObject" in e for e in stored)
    keep = AuditReceiver(tmp_path / "keep", ReceiverSettings(port=0, drop_bodies=False)).start()
    try:
        assert httpx.post(keep.post_url, json=body).status_code == 200
    finally:
        keep.stop()
    assert [e.get("responseObject") for e in read_jsonl(tmp_path / "keep")] == [
        e.get("responseObject") for e in with_bodies
    ]


def _raw_request(url: str, head: bytes, body: bytes = b"") -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head + body)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_oversized_malformed_and_non_audit_bodies_are_refused_and_it_keeps_running(
    receiver: Any, sample_events: list[dict[str, Any]], tmp_path: Path
) -> None:
    r = receiver(max_body_bytes=10_000)
    # 413 from the headers alone: the 50 MB body is never sent, the answer still comes
    answer = _raw_request(
        r.url,
        b"POST /audit HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 50000000\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 413") and b"Connection: close" in answer
    assert httpx.post(r.post_url, content=b"{not json", headers=JSON).status_code == 400
    assert httpx.post(r.post_url, json={"kind": "Pod", "apiVersion": "v1"}).status_code == 400
    assert (
        httpx.post(r.post_url, json={"kind": "EventList", "apiVersion": "audit.k8s.io/v2"}).status_code == 400
    )
    no_length = _raw_request(
        r.url,
        b"POST /audit HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n",
    )
    assert no_length.startswith(b"HTTP/1.1 411")
    good = [sample_events[0], sample_events[1]]
    mixed = {
        "kind": "EventList",
        "apiVersion": "audit.k8s.io/v1",
        "items": [good[0], 42, {"verb": "x"}, good[1]],
    }
    response = httpx.post(r.post_url, json=mixed)
    assert response.status_code == 200 and response.json() == {
        "accepted": 2,
        "rejected": 2,
        "rejects_recorded": 2,
    }
    single = dict(sample_events[2], kind="Event", apiVersion="audit.k8s.io/v1")
    assert httpx.post(r.post_url, json=single).status_code == 200  # a lone Event is accepted too
    assert httpx.get(f"{r.url}/healthz").json() == {"status": "ok"}
    stats = httpx.get(f"{r.url}/stats").json()
    assert (stats["too_large"], stats["rejected_bodies"], stats["rejected_items"], stats["events"]) == (
        1,
        3,
        2,
        3,
    )
    assert stats["length_required"] == 1
    r.stop()
    assert [e["auditID"] for e in read_jsonl(tmp_path / "out")] == [
        good[0]["auditID"],
        good[1]["auditID"],
        sample_events[2]["auditID"],
    ]
    rejects = [json.loads(line) for line in (tmp_path / "out" / REJECTS_NAME).read_text().splitlines()]
    assert [x["reason"][:10] for x in rejects] == [
        "not JSON: ",
        "apiVersion",
        "apiVersion",
        "not-an-eve",  # the cleaner's reasons (perfspec.audit.readers.event_row)
        "not-an-eve",
    ]
    assert rejects[0]["raw"] is None and rejects[0]["bytes"] == 9 and len(rejects[0]["sha256"]) == 64


def test_bearer_token(receiver: Any, sample_events: list[dict[str, Any]]) -> None:
    r = receiver(token="s3cret")
    body = event_lists(sample_events[:3], batch=3)[0]
    assert httpx.post(r.post_url, json=body).status_code == 401
    assert httpx.post(r.post_url, json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert httpx.get(f"{r.url}/stats").status_code == 401
    assert httpx.post(r.post_url, json=body, headers={"Authorization": "Bearer s3cret"}).status_code == 200
    stats = httpx.get(f"{r.url}/stats", headers={"Authorization": "Bearer s3cret"}).json()
    assert stats["unauthorized"] == 3 and stats["events"] == 3


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def test_tls(receiver: Any, sample_events: list[dict[str, Any]], tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    r = receiver(tls_cert=cert, tls_key=key, token="t")
    assert r.url.startswith("https://")
    context = ssl.create_default_context(cafile=str(cert))
    body = event_lists(sample_events[:5], batch=5)[0]
    response = httpx.post(r.post_url, json=body, verify=context, headers={"Authorization": "Bearer t"})
    assert response.status_code == 200
    with pytest.raises(httpx.ConnectError):  # plain HTTP client or unknown CA: refused
        httpx.post(r.post_url, json=body, headers={"Authorization": "Bearer t"})
    assert httpx.get(f"{r.url}/healthz", verify=context).status_code == 200  # server survived the bad client
    r.stop()
    assert len(read_jsonl(tmp_path / "out")) == 5


def test_stop_finishes_in_flight_request_and_closes_idle_keepalive(
    receiver: Any, sample_events: list[dict[str, Any]], tmp_path: Path
) -> None:
    r = receiver()
    host, port = r.url.removeprefix("http://").split(":")
    idle = http.client.HTTPConnection(host, int(port), timeout=10)
    idle.request("GET", "/healthz")
    assert idle.getresponse().read()  # keep-alive connection now idle
    payload = json.dumps(event_lists(sample_events[:4], batch=4)[0]).encode()
    slow = socket.create_connection((host, int(port)), timeout=10)
    slow.sendall(
        b"POST /audit HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
        % len(payload)
        + payload[:10]
    )
    time.sleep(0.3)
    stopped: dict[str, Any] = {}
    stopper = threading.Thread(target=lambda: stopped.update(r.stop()))
    started = time.monotonic()
    stopper.start()
    time.sleep(0.5)
    assert stopper.is_alive()  # waiting for the in-flight request
    slow.sendall(payload[10:])
    answer = slow.recv(4096)
    stopper.join(timeout=10)
    assert answer.startswith(b"HTTP/1.1 200") and not stopper.is_alive()
    assert time.monotonic() - started < 5  # the idle keep-alive connection did not hold it up
    assert stopped["events"] == 4 and len(read_jsonl(tmp_path / "out")) == 4
    slow.close()
    idle.close()


@pytest.mark.slow
def test_cli_restart_appends_without_overwriting(sample_events: list[dict[str, Any]], tmp_path: Path) -> None:
    out = tmp_path / "raw" / "camp"
    bodies = [fresh_ids(b) for b in event_lists(sample_events, batch=10)]
    sent: list[str] = []
    for round_no in range(2):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "perfspec",
                "receive",
                "--port",
                str(port),
                "--out",
                str(out),
                "--rotate-bytes",
                "1000000",
            ],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=dict(os.environ),
        )
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{url}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read()
                time.sleep(0.1)
        half = bodies[round_no::2]
        for body in half:
            assert httpx.post(f"{url}/audit", json=body).status_code == 200
            sent += [i["auditID"] for i in body["items"]]
        proc.send_signal(signal.SIGTERM)
        out_text, err_text = proc.communicate(timeout=30)
        assert proc.returncode == 0, err_text
        final = json.loads(out_text.strip().splitlines()[-1])
        assert final["stopped"] and final["events"] == sum(len(b["items"]) for b in half)
        assert "Traceback" not in err_text
    assert sorted(p.name for p in out.glob("audit-*.jsonl")) == ["audit-000001.jsonl", "audit-000002.jsonl"]
    ids = [e["auditID"] for e in read_jsonl(out)]
    assert ids == sent  # in order, each exactly once, nothing overwritten


SECRET = "SUPERSECRET"
SECRET_OBJECT = {"kind": "Secret", "apiVersion": "v1", "data": {"password": SECRET}}


def test_secrets_in_rejected_bodies_and_items_never_reach_disk(
    receiver: Any, sample_events: list[dict[str, Any]], tmp_path: Path
) -> None:
    r = receiver()
    bad_item = {"verb": "create", "requestObject": SECRET_OBJECT, "responseObject": SECRET_OBJECT}
    no_stage = {**sample_events[0], "auditID": "x", "stage": None, "requestObject": SECRET_OBJECT}
    good = {**sample_events[1], "requestObject": SECRET_OBJECT}
    batch = {"kind": "EventList", "apiVersion": "audit.k8s.io/v1", "items": [bad_item, no_stage, good]}
    assert httpx.post(r.post_url, json=batch).json() == {"accepted": 1, "rejected": 2, "rejects_recorded": 2}
    wrong_version = {"kind": "EventList", "apiVersion": "v1", "items": [{"requestObject": SECRET_OBJECT}]}
    assert httpx.post(r.post_url, json=wrong_version).status_code == 400
    secret_kind = dict(SECRET_OBJECT, stringData={"token": SECRET})  # a Secret posted as such
    assert httpx.post(r.post_url, json=secret_kind).status_code == 400
    annotated = {"kind": "Pod", "metadata": {"annotations": {"last-applied": json.dumps(SECRET_OBJECT)}}}
    assert httpx.post(r.post_url, json=annotated).status_code == 400
    yaml_secret = f"apiVersion: v1\nkind: Secret\nstringData:\n  password: {SECRET}\n".encode()
    assert (
        httpx.post(r.post_url, content=yaml_secret, headers=JSON).status_code == 400
    )  # not JSON: nothing of it is kept
    r.stop()
    out = tmp_path / "out"
    written = {p.name: p.read_bytes() for p in out.iterdir()}
    assert REJECTS_NAME in written and "audit-000001.jsonl" in written
    for name, data in written.items():
        assert SECRET.encode() not in data, name
    rejects = [json.loads(line) for line in written[REJECTS_NAME].splitlines()]
    assert len(rejects) == 6
    assert json.loads(rejects[0]["raw"]) == {
        "verb": "create",
        "requestObject": "<redacted>",
        "responseObject": "<redacted>",
    }
    assert rejects[-1]["raw"] is None and rejects[-1]["bytes"] == len(yaml_secret)


def test_a_body_trickling_in_holds_no_processing_slot(
    receiver: Any, sample_events: list[dict[str, Any]]
) -> None:
    r = receiver(limits={"max_concurrent_requests": 1})
    host, port = r.url.removeprefix("http://").split(":")
    payload = json.dumps(event_lists(sample_events[:2], batch=2)[0]).encode()
    slow = socket.create_connection((host, int(port)), timeout=10)  # mid-body: only its bytes are held
    slow.sendall(
        b"POST /audit HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(payload) + payload[:5]
    )
    time.sleep(0.3)
    assert httpx.post(r.post_url, content=payload, headers=JSON).status_code == 200
    slow.sendall(payload[5:])
    assert slow.recv(4096).startswith(b"HTTP/1.1 200")
    slow.close()
    assert r.stats.snapshot()["busy"] == 0 and r.stats.snapshot()["batches"] == 2


def test_connections_beyond_the_cap_are_reset(receiver: Any) -> None:
    r = receiver(limits={"max_connections": 2})
    host, port = r.url.removeprefix("http://").split(":")
    idle = [http.client.HTTPConnection(host, int(port), timeout=10) for _ in range(2)]
    for conn in idle:
        conn.request("GET", "/healthz")
        assert conn.getresponse().read()
    extra = http.client.HTTPConnection(host, int(port), timeout=10)
    with pytest.raises((ConnectionError, http.client.RemoteDisconnected)):
        extra.request("GET", "/healthz")
        extra.getresponse()
    extra.close()
    idle[0].close()
    deadline = time.monotonic() + 5
    while True:  # the closed connection's handler thread ends, freeing its place
        try:
            assert httpx.get(f"{r.url}/healthz").status_code == 200
            break
        except httpx.TransportError:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    idle[1].close()
    assert r.stats.snapshot()["refused_connections"] >= 1


def test_exposure_rules() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("") and not is_loopback("myhost")
    assert check_exposure(ReceiverSettings()) == []
    with pytest.raises(InputError, match="without a token") as refused:
        check_exposure(ReceiverSettings(host="0.0.0.0"))
    assert "--insecure" in (refused.value.hint or "")
    assert "no token" in check_exposure(ReceiverSettings(host="0.0.0.0"), insecure=True)[0]
    assert "clear text" in check_exposure(ReceiverSettings(host="172.18.0.1", token="t"))[0]
    tls = ReceiverSettings(host="0.0.0.0", token="t", tls_cert=Path("c"), tls_key=Path("k"))
    assert check_exposure(tls) == []


def test_cli_refuses_an_exposed_bind_without_token(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PERFSPEC_RECEIVER__TOKEN"}
    result = subprocess.run(
        [sys.executable, "-m", "perfspec", "receive", "--host", "0.0.0.0", "--out", str(tmp_path / "o")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 2 and "without a token" in result.stderr and "--insecure" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "o").exists()
