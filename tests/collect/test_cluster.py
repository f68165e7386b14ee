"""Cluster checks with the real ``kubernetes`` client against a small API-server stand-in on loopback."""

from __future__ import annotations

import http.server
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from perfspec.collect.campaign import load_manifest, run_campaign
from perfspec.collect.cluster import check_cluster, make_cluster_client, remove_leftover_namespaces
from perfspec.collect.helm import make_helm_driver
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


class FakeApi(http.server.ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ApiHandler)
        self.namespaces = {
            "default": 0,
            "kube-system": 0,
            "ps-1-01-redis": 0,
            "ps-2-03-tiny": 0,
            "ps-notours": 0,
        }
        self.requests: list[tuple[str, str]] = []


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
        self.server.requests.append(("GET", self.path))
        if self.path.startswith("/version"):
            self._send(VERSION)
        elif self.path.startswith("/api/v1/namespaces"):
            items = []
            for name, polls in list(self.server.namespaces.items()):
                if polls < 0:  # terminating: visible for one more list
                    self.server.namespaces[name] = polls + 1
                    if polls + 1 == 0:
                        del self.server.namespaces[name]
                items.append({"metadata": {"name": name}})
            self._send({"kind": "NamespaceList", "apiVersion": "v1", "metadata": {}, "items": items})
        else:
            self._send({"kind": "Status", "code": 404}, 404)

    def do_DELETE(self) -> None:
        self.server.requests.append(("DELETE", self.path))
        name = self.path.split("?")[0].rsplit("/", 1)[-1]
        if name not in self.server.namespaces:
            self._send({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404}, 404)
            return
        self.server.namespaces[name] = -1
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
    removed = remove_leftover_namespaces(client, "ps", poll_seconds=0.01)
    assert removed == ["ps-1-01-redis", "ps-2-03-tiny"]
    assert sorted(server.namespaces) == ["default", "kube-system", "ps-notours"]
    deletes = [p for m, p in server.requests if m == "DELETE"]
    assert [p.split("?")[0] for p in deletes] == [
        "/api/v1/namespaces/ps-1-01-redis",
        "/api/v1/namespaces/ps-2-03-tiny",
    ]
    client.delete_namespace("not-there")  # 404 is fine: already gone


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


def test_campaign_records_cluster_and_cleans_leftovers(
    api: tuple[FakeApi, Path], fake_helm: FakeHelm, tmp_path: Path
) -> None:
    server, kubeconfig = api
    charts = tmp_path / "charts.yaml"
    charts.write_text(f"- {{name: tiny, repo: '{TINY_CHART}'}}\n")
    settings = CollectSettings(pause_after_install_seconds=0, pause_after_uninstall_seconds=0)
    spec = load_campaign(charts, settings, name="k", delete_namespaces_after_uninstall=True)
    result = run_campaign(
        spec, tmp_path / "out", make_helm_driver(fake_helm.path, kubeconfig), make_cluster_client(kubeconfig)
    )
    run = load_manifest(result.manifest_path)["runs"][0]
    assert run["cluster"]["server_version"] == "v1.30.0"
    assert run["leftover_namespaces_removed"] == ["ps-1-01-redis", "ps-2-03-tiny"]
    assert result.ok
    assert ("DELETE", "/api/v1/namespaces/ps-1-01-tiny") in [(m, p.split("?")[0]) for m, p in server.requests]
