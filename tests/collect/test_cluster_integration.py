"""A real one-chart campaign on a real cluster with the real helm, while `perfspec receive` records audit
events. Runs only when KUBECONFIG points at a reachable cluster and `helm` is on PATH (e.g. the kind
cluster of deployments/kind with its webhook pointed at port PERFSPEC_IT_RECEIVER_PORT, default 9444)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from perfspec.collect.campaign import run_campaign
from perfspec.collect.cluster import check_cluster, make_cluster_client
from perfspec.collect.helm import make_helm_driver
from perfspec.collect.manifest import load_manifest
from perfspec.collect.receiver import AuditReceiver
from perfspec.collect.spec import load_campaign
from perfspec.errors import EnvironmentProblem
from perfspec.settings import CollectSettings, ReceiverSettings
from tests.collect.conftest import TINY_CHART

pytestmark = pytest.mark.cluster


def _cluster_or_skip() -> Path:
    kubeconfig = os.environ.get("KUBECONFIG")
    if not kubeconfig or not Path(kubeconfig.split(os.pathsep)[0]).is_file():
        pytest.skip("no cluster: KUBECONFIG is not set to a kubeconfig file")
    if shutil.which("helm") is None:
        pytest.skip("no cluster test: the helm binary is not on PATH")
    path = Path(kubeconfig.split(os.pathsep)[0])
    try:
        check_cluster(make_cluster_client(path, request_timeout=5))
    except EnvironmentProblem as error:
        pytest.skip(f"cluster in KUBECONFIG not reachable: {error}")
    return path


def test_real_campaign_installs_and_uninstalls_a_local_chart(tmp_path: Path) -> None:
    kubeconfig = _cluster_or_skip()
    charts = tmp_path / "charts.yaml"
    charts.write_text(f"- {{name: tiny, repo: '{TINY_CHART}'}}\n")
    settings = CollectSettings(
        pause_after_install_seconds=3,
        pause_after_uninstall_seconds=3,
        namespace_prefix="psit",
        delete_namespaces_after_uninstall=True,
        wait=True,
    )
    spec = load_campaign(charts, settings, name="it")
    out = tmp_path / "raw" / "it"
    port = int(os.environ.get("PERFSPEC_IT_RECEIVER_PORT", "9444"))
    try:
        receiver = AuditReceiver(out, ReceiverSettings(host="0.0.0.0", port=port)).start()
    except EnvironmentProblem:
        receiver = None  # port busy (a `perfspec receive` already runs): campaign only
    try:
        result = run_campaign(
            spec,
            out,
            make_helm_driver("helm", kubeconfig),
            make_cluster_client(kubeconfig),
            receiver_dir=out if receiver else None,
        )
    finally:
        if receiver:
            receiver.stop()
    assert result.ok, load_manifest(result.manifest_path)["steps"]
    manifest = load_manifest(result.manifest_path)
    assert manifest["runs"][0]["cluster"]["server_version"].startswith("v1.")
    assert [r["action"] for r in manifest["steps"]] == ["install", "uninstall"]
    if receiver and result.labelled_events:
        labels = (out / "labels.jsonl").read_text()
        assert "psit-1-01-tiny" in labels
