"""Cluster checks with the real ``kubernetes`` client against a small API-server stand-in on loopback:
leftovers are found by label + exact name, releases go before their namespaces."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from perfspec.collect.campaign import run_campaign
from perfspec.collect.cluster import (
    MANAGED_SELECTOR,
    check_cluster,
    make_cluster_client,
    namespace_labels,
    remove_leftover_namespaces,
)
from perfspec.collect.helm import make_helm_driver
from perfspec.collect.manifest import load_manifest
from perfspec.collect.spec import load_campaign
from perfspec.errors import EnvironmentProblem
from perfspec.settings import CollectSettings
from tests.collect.conftest import TINY_CHART, FakeHelm

VERSION = {
    "major": "1",
    "minor": "30",
    "gitVersion": "v1.30.0",
    "gitCommit": "abc",
    "gitTreeState": "clean",
    "buildDate": "2024-04-17T00:00:00Z",
    "goVersion": "go1.22.2",
    "compiler": "gc",
    "platform": "linux/amd64",
}


OURS = namespace_labels("old-campaign")


class FakeApi(http.server.ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ApiHandler)
        # name -> [polls left while terminating (0: active, <0: terminating), labels]
        self.namespaces: dict[str, list[Any]] = {
            "default": [0, {}],
            "kube-system": [0, {}],
            "ps-1-01-redis": [0, OURS],
            "ps-2-03-tiny": [0, OURS],
            "ps-1-100-big": [0, OURS],  # 3-digit position: still a plan name
            "ps-1-02-someone": [0, {}],  # plan-shaped but not labelled: never touched
            "ps-9-lookalike": [0, OURS],  # labelled but not plan-shaped: never touched
            "ps-notours": [0, {}],
        }
        self.requests: list[tuple[str, str]] = []
        self.times: list[float] = []

    def log(self, method: str, path: str) -> None:
        self.requests.append((method, path))
        self.times.append(time.time())


class _ApiHandler(http.server.BaseHTTPRequestHandler):
    server: FakeApi

    def log_message(self, *_: Any) -> None:
        pass

    def _send(self, payload: Any, code: int = 200) -> None:
        body = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self.server.log("GET", self.path)
        url = urlsplit(self.path)
        if url.path.startswith("/version"):
            self._send(VERSION)
        elif url.path == "/api/v1/namespaces":
            selector = parse_qs(url.query).get("labelSelector", [""])[0]
            wanted = dict(term.split("=", 1) for term in selector.split(",") if term)
            items = []
            for name, entry in list(self.server.namespaces.items()):
                polls, labels = entry
                if any(labels.get(k) != v for k, v in wanted.items()):
                    continue
                if polls < 0:  # terminating: visible for one more list
                    entry[0] = polls + 1
                    if polls + 1 == 0:
                        del self.server.namespaces[name]
                items.append({"metadata": {"name": name, "labels": labels}})
            self._send({"kind": "NamespaceList", "apiVersion": "v1", "metadata": {}, "items": items})
        else:
            self._send({"kind": "Status", "code": 404}, 404)

    def do_POST(self) -> None:
        self.server.log("POST", self.path)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        name = body["metadata"]["name"]
        if name in self.server.namespaces:
            status = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "AlreadyExists"}
            self._send({**status, "code": 409}, 409)
            return
        self.server.namespaces[name] = [0, body["metadata"].get("labels") or {}]
        self._send(body, 201)

    def do_DELETE(self) -> None:
        self.server.log("DELETE", self.path)
        name = self.path.split("?")[0].rsplit("/", 1)[-1]
        if name not in self.server.namespaces:
            self._send({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404}, 404)
            return
        self.server.namespaces[name][0] = -1
        self._send({"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": name}})


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[FakeApi, Path]]:
    server = FakeApi()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: t\n"
        f"clusters:\n- name: t\n  cluster:\n    server: http://127.0.0.1:{server.server_address[1]}\n"
        "contexts:\n- name: t\n  context:\n    cluster: t\n    user: u\n"
        "users:\n- name: u\n  user:\n    token: x\n"
    )
    yield server, kubeconfig
    server.shutdown()
    server.server_close()


def test_version_and_leftover_namespaces(api: tuple[FakeApi, Path]) -> None:
    server, kubeconfig = api
    client = make_cluster_client(kubeconfig)
    info = check_cluster(client)
    assert info.server_version == "v1.30.0" and info.host.startswith("http://127.0.0.1:")
    removed = remove_leftover_namespaces(client, "ps", poll_seconds=0.01, keep=["ps-2-03-tiny"])
    assert removed == ["ps-1-01-redis", "ps-1-100-big"]
    assert sorted(server.namespaces) == [
        "default",
        "kube-system",
        "ps-1-02-someone",
        "ps-2-03-tiny",
        "ps-9-lookalike",
        "ps-notours",
    ]
    deletes = [p for m, p in server.requests if m == "DELETE"]
    assert [p.split("?")[0] for p in deletes] == [
        "/api/v1/namespaces/ps-1-01-redis",
        "/api/v1/namespaces/ps-1-100-big",
    ]
    client.delete_namespace("not-there")  # 404 is fine: already gone
    assert client.create_namespace("ps-3-01-new", namespace_labels("c")) is True
    assert client.create_namespace("ps-3-01-new", {"other": "x"}) is False  # existed: left unchanged
    assert server.namespaces["ps-3-01-new"][1] == {
        "app.kubernetes.io/managed-by": "perfspec",
        "perfspec/campaign": "c",
    }
    assert "ps-3-01-new" in client.list_namespaces(MANAGED_SELECTOR)


def test_unreachable_or_unconfigured_cluster_is_an_environment_problem(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: t\n"
        f"clusters:\n- name: t\n  cluster:\n    server: http://127.0.0.1:{port}\n"
        "contexts:\n- name: t\n  context:\n    cluster: t\n    user: u\nusers:\n- name: u\n  user: {}\n"
    )
    client = make_cluster_client(kubeconfig, request_timeout=2)
    with pytest.raises(EnvironmentProblem, match="unreachable"):
        check_cluster(client)
    with pytest.raises(EnvironmentProblem, match="kubeconfig"):
        make_cluster_client(tmp_path / "missing")


def _leftover_release(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": name,
        "revision": 1,
        "status": "deployed",
        "chart": "redis",
        "chart_version": "1.0.0",
        "first_deployed": "2024-01-01T00:00:00Z",
        "last_deployed": "2024-01-01T00:00:00Z",
        "description": "Install complete",
    }


def test_campaign_uninstalls_leftover_releases_before_deleting_labelled_namespaces(
    api: tuple[FakeApi, Path], fake_helm: FakeHelm, tmp_path: Path
) -> None:
    server, kubeconfig = api
    releases = {f"{n}/{n}": _leftover_release(n) for n in ("ps-1-01-redis", "ps-1-02-someone")}
    (fake_helm.state / "releases.json").write_text(json.dumps({"releases": releases, "hits": {}}))
    charts = tmp_path / "charts.yaml"
    charts.write_text(f"- {{name: tiny, repo: '{TINY_CHART}'}}\n")
    settings = CollectSettings(pause_after_install_seconds=0, pause_after_uninstall_seconds=0)
    spec = load_campaign(charts, settings, name="k", delete_namespaces_after_uninstall=True)
    result = run_campaign(
        spec, tmp_path / "out", make_helm_driver(fake_helm.path, kubeconfig), make_cluster_client(kubeconfig)
    )
    assert result.ok
    manifest = load_manifest(result.manifest_path)
    run = manifest["runs"][0]
    assert run["cluster"]["server_version"] == "v1.30.0"
    assert [(r["release"], r["result"]) for r in run["leftover_releases"]] == [
        ("ps-1-01-redis", "ok"),
        ("ps-1-02-someone", "kept: namespace not labelled by perfspec"),
    ]
    assert run["leftover_namespaces_removed"] == ["ps-1-01-redis", "ps-1-100-big", "ps-2-03-tiny"]
    assert run["unmanaged_namespaces_kept"] == ["ps-1-02-someone"]
    assert set(fake_helm.releases()) == {"ps-1-02-someone/ps-1-02-someone"}  # the unlabelled one stays
    # order: helm uninstall of the leftover, then its namespace's DELETE
    helm_log = [json.loads(x) for x in (fake_helm.state / "calls.jsonl").read_text().splitlines()]
    uninstalled_at = next(c["at"] for c in helm_log if c["argv"][:2] == ["uninstall", "ps-1-01-redis"])
    deleted_at = next(
        t for (m, p), t in zip(server.requests, server.times, strict=True)
        if m == "DELETE" and p.startswith("/api/v1/namespaces/ps-1-01-redis")
    )  # fmt: skip
    assert dt.datetime.fromisoformat(uninstalled_at.replace("Z", "+00:00")).timestamp() < deleted_at
    # the release namespace is created labelled before helm installs, and deleted after the uninstall
    install = next(r for r in manifest["steps"] if r["action"] == "install")
    assert install["namespace_created"] is True
    assert server.namespaces.get("ps-1-01-tiny", [None])[0] in (None, -1)
    posts = [p for m, p in server.requests if m == "POST"]
    assert posts == ["/api/v1/namespaces"]
    calls = [(m, p.split("?")[0]) for m, p in server.requests]
    assert ("DELETE", "/api/v1/namespaces/ps-1-01-tiny") in calls


def test_resume_uninstalls_its_own_releases_before_deleting_namespaces(
    api: tuple[FakeApi, Path], fake_helm: FakeHelm, tmp_path: Path
) -> None:
    server, kubeconfig = api
    charts = tmp_path / "charts.yaml"
    charts.write_text(f"- {{name: tiny, repo: '{TINY_CHART}'}}\n- {{name: other, repo: '{TINY_CHART}'}}\n")
    settings = CollectSettings(pause_after_install_seconds=0, pause_after_uninstall_seconds=0)
    spec = load_campaign(charts, settings, name="crash", mode="pairwise")
    driver, out = make_helm_driver(fake_helm.path, kubeconfig), tmp_path / "out"
    run_campaign(spec, out, driver, make_cluster_client(kubeconfig))
    manifest = load_manifest(out / "manifest.json")
    manifest["steps"] = manifest["steps"][:3]  # killed (SIGKILL) after installing the second chart
    manifest["steps"][2]["result"] = "running"
    manifest["runs"][0]["status"] = "running"
    (out / "manifest.json").write_text(json.dumps(manifest))
    driver.install("ps-1-02-other", "ps-1-02-other", spec.charts[1], 45)
    assert server.namespaces["ps-1-02-other"][1] == namespace_labels("crash")
    server.requests.clear()
    server.times.clear()
    result = run_campaign(spec, out, driver, make_cluster_client(kubeconfig))
    assert result.status == "completed" and fake_helm.releases() == {}
    run2 = load_manifest(out / "manifest.json")["runs"][1]
    assert "ps-1-02-other" in run2["leftover_namespaces_removed"]
    helm_log = [json.loads(x) for x in (fake_helm.state / "calls.jsonl").read_text().splitlines()]
    uninstalls = [c["at"] for c in helm_log if c["argv"][:2] == ["uninstall", "ps-1-02-other"]]
    deleted_at = next(
        t for (m, p), t in zip(server.requests, server.times, strict=True)
        if m == "DELETE" and p.startswith("/api/v1/namespaces/ps-1-02-other")
    )  # fmt: skip
    assert len(uninstalls) == 3  # run 1's planned one, run 2's resume-cleanup, run 2's planned one
    resume_cleanup_at = dt.datetime.fromisoformat(uninstalls[1].replace("Z", "+00:00")).timestamp()
    assert resume_cleanup_at < deleted_at  # helm's release record was still there
