"""The campaign runner against the stand-in helm: order, retries, failures, cleanup, interruption, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from perfspec.collect.campaign import run_campaign
from perfspec.collect.helm import make_helm_driver
from perfspec.collect.manifest import load_manifest
from perfspec.collect.spec import load_campaign
from perfspec.errors import InputError
from perfspec.settings import CollectSettings
from tests.collect.conftest import REPO_ROOT, FakeHelm

FAST = CollectSettings(pause_after_install_seconds=0, pause_after_uninstall_seconds=0, retry_delay_seconds=0)
CHARTS = """\
- {name: redis, repo: 'https://charts.bitnami.com/bitnami', repo_name: bitnami, version: 17.6.0}
- {name: grafana, repo: 'https://grafana.github.io/helm-charts', repo_name: grafana, version: 6.50.5}
- {name: nginx, repo: 'https://charts.bitnami.com/bitnami', repo_name: bitnami, version: 13.2.22}
"""


@pytest.fixture
def charts_file(tmp_path: Path) -> Path:
    path = tmp_path / "charts.yaml"
    path.write_text(CHARTS)
    return path


def actions(fake: FakeHelm) -> list[tuple[str, str]]:
    return [(c[0], c[1]) for c in fake.calls() if c[0] in ("upgrade", "uninstall", "status", "rollback")]


def test_batch_campaign_runs_every_step_in_order(
    fake_helm: FakeHelm, charts_file: Path, tmp_path: Path
) -> None:
    spec = load_campaign(charts_file, FAST, name="c1")
    seen: list[tuple[str, str]] = []
    result = run_campaign(
        spec,
        tmp_path / "out",
        make_helm_driver(fake_helm.path),
        None,
        progress=lambda kind, r: seen.append((kind, r["release"])),
    )
    names = ["ps-1-01-redis", "ps-1-02-grafana", "ps-1-03-nginx"]
    assert actions(fake_helm) == [("upgrade", n) for n in names] + [("uninstall", n) for n in names]
    assert result.status == "completed" and result.ok
    assert (result.installs_ok, result.uninstalls_ok, result.cleanup_uninstalls) == (3, 3, 0)
    manifest = load_manifest(result.manifest_path)
    assert manifest["status"] == "completed" and manifest["runs"][0]["helm_version"] == "3.14.2"
    assert [(r["action"], r["release"], r["result"]) for r in manifest["steps"]] == [
        ("install", n, "ok") for n in names
    ] + [("uninstall", n, "ok") for n in names]
    for record in manifest["steps"]:
        assert record["started_at"] <= record["ended_at"]
    assert seen[:2] == [("start", "ps-1-01-redis"), ("end", "ps-1-01-redis")]
    assert fake_helm.releases() == {}


def test_failing_install_is_retried_recorded_and_the_campaign_goes_on(
    fake_helm: FakeHelm, charts_file: Path, tmp_path: Path
) -> None:
    fake_helm.configure(
        fail=[
            {
                "command": "upgrade",
                "match": "grafana",
                "leave": "pending-install",
                "stderr": "Error: INSTALLATION FAILED: timed out waiting for the condition",
            }
        ]
    )
    spec = load_campaign(charts_file, FAST, name="c2", install_retries=2)
    result = run_campaign(spec, tmp_path / "out", make_helm_driver(fake_helm.path), None)
    assert result.status == "completed" and not result.ok
    assert (result.installs_ok, result.installs_failed, result.uninstalls_ok) == (2, 1, 3)
    assert actions(fake_helm) == [
        ("upgrade", "ps-1-01-redis"),
        ("upgrade", "ps-1-02-grafana"),  # attempt 1 fails, leaves pending-install
        ("status", "ps-1-02-grafana"),
        ("uninstall", "ps-1-02-grafana"),  # cleared before the retry
        ("upgrade", "ps-1-02-grafana"),
        ("status", "ps-1-02-grafana"),
        ("uninstall", "ps-1-02-grafana"),
        ("upgrade", "ps-1-02-grafana"),  # third and last attempt
        ("upgrade", "ps-1-03-nginx"),
        ("uninstall", "ps-1-01-redis"),
        ("uninstall", "ps-1-02-grafana"),
        ("uninstall", "ps-1-03-nginx"),
    ]
    record = load_manifest(result.manifest_path)["steps"][1]
    assert record["result"] == "failed" and "timed out waiting" in record["error"]
    assert len(record["attempts"]) == 3 and record["attempts"][0]["cleared"].startswith("uninstalled")
    assert fake_helm.releases() == {}  # the failed release left behind was uninstalled too


def test_failed_uninstall_is_retried_by_cleanup(
    fake_helm: FakeHelm, charts_file: Path, tmp_path: Path
) -> None:
    fake_helm.configure(
        fail=[
            {
                "command": "uninstall",
                "match": "redis",
                "times": 1,
                "stderr": "Error: uninstallation completed with 1 error(s): etcdserver: timeout",
            }
        ]
    )
    spec = load_campaign(charts_file, FAST, name="c3", mode="pairwise")
    result = run_campaign(spec, tmp_path / "out", make_helm_driver(fake_helm.path), None)
    steps = load_manifest(result.manifest_path)["steps"]
    assert [(r["kind"], r["action"], r["chart"], r["result"]) for r in steps] == [
        ("planned", "install", "redis", "ok"),
        ("planned", "uninstall", "redis", "failed"),
        ("planned", "install", "grafana", "ok"),
        ("planned", "uninstall", "grafana", "ok"),
        ("planned", "install", "nginx", "ok"),
        ("planned", "uninstall", "nginx", "ok"),
        ("cleanup", "uninstall", "redis", "ok"),
    ]
    assert steps[1]["error_kind"] == "ConnectionError"
    assert result.uninstalls_failed == 1 and result.cleanup_uninstalls == 1
    assert fake_helm.releases() == {}


def test_other_campaign_in_the_folder_is_refused(
    fake_helm: FakeHelm, charts_file: Path, tmp_path: Path
) -> None:
    driver = make_helm_driver(fake_helm.path)
    run_campaign(load_campaign(charts_file, FAST, name="c4"), tmp_path / "out", driver, None)
    with pytest.raises(InputError, match="another campaign"):
        run_campaign(load_campaign(charts_file, FAST, name="c4", limit=1), tmp_path / "out", driver, None)
    again = run_campaign(load_campaign(charts_file, FAST, name="c4"), tmp_path / "out", driver, None)
    assert again.steps_skipped == 6 and again.steps_run == 0  # completed campaign: nothing left to do


def _collect_cmd(charts: Path, helm: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "perfspec",
        "collect",
        "--charts",
        str(charts),
        "--helm",
        str(helm),
        "--skip-cluster-check",
        "--pause-install",
        "0.3",
        "--pause-uninstall",
        "0",
        *extra,
    ]


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_uninstalls_what_was_installed_and_keeps_the_manifest(
    fake_helm: FakeHelm, charts_file: Path, tmp_path: Path, sig: signal.Signals
) -> None:
    fake_helm.configure(sleep={"upgrade": 0.5})
    env = {
        **os.environ,
        "PERFSPEC_PATHS__DATA_DIR": str(tmp_path / "data"),
        "FAKE_HELM_DIR": str(fake_helm.state),
    }
    proc = subprocess.Popen(
        _collect_cmd(charts_file, fake_helm.path, "--name", "sig"),
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while len(fake_helm.calls("upgrade")) < 2 and time.monotonic() < deadline:  # second install under way
        time.sleep(0.05)
    assert len(fake_helm.calls("upgrade")) >= 2, proc.communicate(timeout=5)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    manifest = json.loads((tmp_path / "data" / "raw" / "sig" / "manifest.json").read_text())
    assert manifest["status"] == "interrupted" and manifest["runs"][0]["interrupted_by"] == sig.name
    cleanup = [r["release"] for r in manifest["steps"] if r["kind"] == "cleanup"]
    installs = [r["release"] for r in manifest["steps"] if r["action"] == "install"]
    assert cleanup == list(reversed(installs)) and len(installs) >= 2
    assert all(r["result"] in ("ok", "interrupted") for r in manifest["steps"])
    assert fake_helm.releases() == {}  # nothing left installed
    assert "interrupted" in out
    # resuming the same campaign completes it; nothing is installed twice at the same time
    resumed = subprocess.run(
        _collect_cmd(charts_file, fake_helm.path, "--name", "sig"),
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert resumed.returncode == 0, resumed.stderr
    manifest = json.loads((tmp_path / "data" / "raw" / "sig" / "manifest.json").read_text())
    assert manifest["status"] == "completed" and len(manifest["runs"]) == 2
    run2 = [(r["action"], r["chart"]) for r in manifest["steps"] if r["run"] == 2]
    assert run2 == [("install", c) for c in ("redis", "grafana", "nginx")] + [
        ("uninstall", c) for c in ("redis", "grafana", "nginx")
    ]
    assert fake_helm.releases() == {}


def test_resume_after_a_hard_crash_uninstalls_leftovers_first(
    fake_helm: FakeHelm, charts_file: Path, tmp_path: Path
) -> None:
    spec = load_campaign(charts_file, FAST, name="crash", mode="pairwise")
    driver = make_helm_driver(fake_helm.path)
    out = tmp_path / "out"
    run_campaign(spec, out, driver, None)
    manifest = load_manifest(out / "manifest.json")
    # forge a run killed by SIGKILL after installing grafana: its uninstall never ran
    manifest["steps"] = manifest["steps"][:3]
    manifest["steps"][2]["result"] = "running"
    manifest["runs"][0]["status"] = "running"
    manifest["status"] = "running"
    (out / "manifest.json").write_text(json.dumps(manifest))
    driver.install("ps-1-02-grafana", "ps-1-02-grafana", spec.charts[1], 45)
    result = run_campaign(spec, out, driver, None)
    steps = load_manifest(out / "manifest.json")["steps"]
    assert steps[2]["result"] == "crashed"
    assert [(r["kind"], r["action"], r["chart"]) for r in steps if r["run"] == 2] == [
        ("resume-cleanup", "uninstall", "grafana"),
        ("planned", "install", "grafana"),
        ("planned", "uninstall", "grafana"),
        ("planned", "install", "nginx"),
        ("planned", "uninstall", "nginx"),
    ]
    assert result.steps_skipped == 2 and result.status == "completed"
    assert fake_helm.releases() == {}
